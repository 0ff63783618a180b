"""Draws docs/fives_upsampling.png: a 2048x2048 FIVES photograph's thin vessels, its label, and the
shipped model's mask with the map brought back bilinearly (before Session 9) and through the logit
bicubically (now).

    python docs/fives_upsampling.py --root . --name 10_A --box 920 280 320
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset import load_sample, pair_files, split_dir  # noqa: E402
from inference import Segmenter, upsample_map  # noqa: E402
from preprocess import to_gray  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".")
    p.add_argument("--name", default="10_A")
    p.add_argument("--box", type=int, nargs=3, default=[920, 280, 320], metavar=("X", "Y", "SIDE"))
    p.add_argument("--weights", default="UNet.onnx")
    p.add_argument("--out", default=str(Path(__file__).with_name("fives_upsampling.png")))
    args = p.parse_args(argv)
    files = [t for t in pair_files(split_dir(args.root, "FIVES", "test"), require_mask=True) if t[0].stem == args.name]
    s = load_sample(*files[0])
    seg = Segmenter.from_file(args.weights)
    trace = {}
    seg.probability(s.image, s.fov, trace=trace)
    h, w = s.label.shape
    before = cv2.resize(trace["blended"], (w, h), interpolation=cv2.INTER_LINEAR) >= seg.threshold
    now = upsample_map(trace["blended"], (w, h)) >= seg.threshold
    x, y, side = args.box
    crop = (slice(y, y + side), slice(x, x + side))

    def overlay(mask):  # white: both; red: predicted only (false positive); blue: label only (missed)
        out = np.zeros((side, side, 3), np.uint8)
        lab, m = s.label[crop], mask[crop]
        out[lab & m] = (255, 255, 255)
        out[m & ~lab] = (0, 0, 255)
        out[lab & ~m] = (255, 128, 0)
        return out

    gray = cv2.cvtColor(to_gray(s.image)[crop], cv2.COLOR_GRAY2BGR)
    label = cv2.cvtColor(s.label[crop].astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR)
    panels = [(gray, "photograph (gray)"), (label, "label"), (overlay(before), "bilinear probability"),
              (overlay(now), "bicubic logit (now)")]
    tiles = []
    for img, text in panels:
        img = cv2.copyMakeBorder(img, 28, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(img, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(img)
    ok, buf = cv2.imencode(".png", np.hstack(tiles))
    Path(args.out).write_bytes(buf.tobytes())
    print(f"{args.out}: {args.name} [{x}:{x + side}, {y}:{y + side}]; red: extra, blue: missed")


if __name__ == "__main__":
    main()
