"""Artery/vein models compared on the same validation photographs (docs/experiments.md, Session 14).

The photographs are those ``--ref`` (a .pth written by train.py --av) held out for validation, from
its first dataset only (so models trained with and without --also are scored on the same images);
each model classifies segment by segment (the default) and pixel by pixel, and with ``--tta`` also
with its maps averaged with the flipped photograph's (predict.py --tta). Scores as evaluate.py --av
computes them (av.py; pooled).

    python docs/av_validation.py --root RUNS --ref av_A.pth av_A.onnx av_B.onnx av_W.onnx
    python docs/av_validation.py --root RUNS --ref av_B.pth --tta av_B.onnx av_C.onnx av_D.onnx
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset import load_split  # noqa: E402
from evaluate import av_evaluate  # noqa: E402
from inference import Segmenter  # noqa: E402
from unet import read_checkpoint  # noqa: E402

KEYS = ["artery_f1", "vein_f1", "vessel_f1", "accuracy_found", "accuracy_centreline"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".", help="folder holding the prepared DRIVE-AV/ (default: %(default)s)")
    p.add_argument("--ref", required=True, help="the checkpoint whose validation photographs are used")
    p.add_argument("weights", nargs="+", help="artery/vein models (.pth or .onnx)")
    p.add_argument("--tta", action="store_true", help="also score each model with the flip (test-time augmentation)")
    args = p.parse_args(argv)
    info = read_checkpoint(args.ref)["info"]
    dataset = info["trained_on"].split("+")[0]
    held = set(info["val_images"])
    samples = [s for s in load_split(args.root, dataset, "train", av=True) if s.name in held]
    print(f"{dataset}: {', '.join(s.name for s in samples)}\n")
    print("| model | classes | " + " | ".join(KEYS) + " | mean A/V F1 |")
    print("|---|---|" + "---|" * (len(KEYS) + 1))
    for path, flip in [(w, f) for w in args.weights for f in ((False, True) if args.tta else (False,))]:
        seg = Segmenter.from_file(path, flip=flip)
        for vote in (False, True):
            classes = [seg.segment_av(s.image, s.fov, vote=vote)[3] for s in samples]
            sc, _, _ = av_evaluate(samples, classes)
            print(f"| {Path(path).stem} | {'vote' if vote else 'pixels'}{' + flip' if flip else ''} | " +
                  " | ".join(f"{sc[k]:.4f}" for k in KEYS) + f" | {(sc['artery_f1'] + sc['vein_f1']) / 2:.4f} |")


if __name__ == "__main__":
    main()
