"""What a model's ``edge_line`` setting clears on photographs without vessel labels (docs/experiments.md, Session 29).

Each photograph is segmented twice with the same model, with its stored ``edge_line`` and without it; printed per
photograph: the mask's pixels both ways, and those in the outer 3 px of the estimated FOV. Where the two differ the
photograph is worth looking at (``--pictures``: the class maps side by side, the cleared pixels in white): a line the
network drew along the FOV's edge, or a vessel that really runs along it.

    python docs/edge_line_probe.py ../shared/data/DISC/DRIONS-DB/image/image_{06[1-9],0[7-9]?,100}.jpg --pictures probe/
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imio import read_image, stem, write_png  # noqa: E402
from inference import AV_WEIGHTS, Segmenter  # noqa: E402
from preprocess import estimate_fov, fov_depth  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="photographs")
    p.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / AV_WEIGHTS),
                   help="a model with an edge_line setting (default: the shipped UNet_AV.onnx)")
    p.add_argument("--pictures", default=None, help="folder for a picture of each photograph where pixels were cleared")
    args = p.parse_args(argv)
    seg = Segmenter.from_file(args.weights)
    if not seg.edge_line:
        raise SystemExit(f"error: {args.weights} has no edge_line setting")
    stored = dict(seg.edge_line)
    print("photograph mask_without mask_with outer3px_without outer3px_with")
    total = np.zeros(4, np.int64)
    changed = 0
    for path in args.photos:
        image = read_image(path)
        fov = estimate_fov(image)
        depth = fov_depth(fov)
        ring = fov & (depth <= 3)
        results = []
        for setting in ({}, stored):
            seg.edge_line = setting
            if seg.classes == "av":
                _, mask, _, kinds = seg.segment_av(image, fov)
            else:
                _, mask = seg.segment(image, fov)
                kinds = mask.astype(np.uint8)
            results.append((mask, kinds))
        (m0, k0), (m1, k1) = results
        row = np.array([m0.sum(), m1.sum(), (m0 & ring).sum(), (m1 & ring).sum()], np.int64)
        total += row
        print(stem(Path(path)), *row)
        if row[0] != row[1]:
            changed += 1
            if args.pictures:
                panels = []
                for kinds in (k0, k1):
                    panel = (image[..., :3] if image.ndim == 3 else np.dstack([image] * 3)).copy()
                    panel[kinds == 1] = (255, 0, 0)
                    panel[kinds == 2] = (0, 0, 255)
                    panels.append(panel)
                panels[1][m0 & ~m1] = (255, 255, 255)
                Path(args.pictures).mkdir(parents=True, exist_ok=True)
                write_png(Path(args.pictures) / f"{stem(Path(path))}.png", np.concatenate(panels, axis=1))
    print("all", *total)
    print(f"pixels cleared in {changed} of {len(args.photos)} photographs: {total[0] - total[1]} of {total[0]} "
          f"mask pixels ({(total[0] - total[1]) / max(total[0], 1):.2%})")


if __name__ == "__main__":
    main()
