"""How well disc.py finds the optic disc: centre and radius against the references, per set.

References: DRIVE's disc circles (DISC/DRIVE_disc.csv, 40 photographs, official FOV masks) and
DRIONS-DB's expert outlines (109 film scans, 600x400; the centre is the outline's centroid, the
radius that of a circle of its area; FOV estimated). The vessel masks come from the shipped
UNet.onnx. The locator's constants were chosen on DRIVE training and DRIONS-DB images 001-060 only;
DRIVE test and DRIONS-DB 061-110 are held out.

    python docs/disc_accuracy.py                 # prints the table; --csv FILE the per-photograph errors
    python docs/disc_accuracy.py --figures docs  # also disc_errors.png (the distributions) and disc_worst.png
    python docs/disc_accuracy.py --others docs   # also disc_other_cameras.jpg: STARE (700x605), LES-AV
                                                 # (1620x1444) and FIVES-mini (2048x2048), which have no
                                                 # disc references: every photograph with its disc, to look at
"""
import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from disc import DiscNet, default_locator, describe, find_disc  # noqa: E402
from imio import read_image, read_mask  # noqa: E402
from inference import Segmenter  # noqa: E402
from prepare_data import read_label  # noqa: E402
from preprocess import estimate_fov  # noqa: E402


def references(data):
    """(set, name, photograph, FOV mask path or None, centre x, centre y, radius)."""
    with open(data / "DISC" / "DRIVE_disc.csv") as f:
        for r in csv.DictReader(f):
            split = "training" if r["split"] == "training" else "test"
            n = r["image"][:2]
            kind = "training" if split == "training" else "test"
            yield (f"DRIVE {split}", r["image"], data / "DRIVE" / split / "images" / r["image"],
                   data / "DRIVE" / split / "mask" / f"{n}_{kind}_mask.gif",
                   float(r["centre_x"]), float(r["centre_y"]), float(r["radius"]))
    d = data / "DISC" / "DRIONS-DB"
    for p in sorted((d / "image").glob("image_*.jpg")):
        label = read_label(d / "label" / p.name, None)  # as prepare_data.py --dataset DISC reads it
        ys, xs = np.nonzero(label)
        number = int(p.stem.split("_")[1])
        part = "DRIONS-DB 001-060" if number <= 60 else "DRIONS-DB 061-110 (held out)"
        yield part, p.name, p, None, float(xs.mean()), float(ys.mean()), float(np.sqrt(label.sum() / np.pi))


def side_agreement(rows):
    """'agree of told (unknown)' over the photographs whose reference disc is off-centre."""
    told = [r for r in rows if r["reference_side"]]
    if not told:
        return "- (disc-centred)"
    agree = sum(r["laterality"] == r["reference_side"] for r in told)
    unknown = sum(r["laterality"] == "unknown" for r in told)
    return f"{agree} of {len(told)}" + (f" ({unknown} unknown)" if unknown else "")


def figures(rows, folder, locator):
    """disc_errors.png: the cumulative share of photographs against the centre error and the radius
    ratio, per set; disc_worst.png: the three photographs with the largest centre error."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for part in dict.fromkeys(r["set"] for r in rows):
        e = np.sort([r["centre_error_radii"] for r in rows if r["set"] == part])
        q = np.sort([abs(r["radius_ratio"] - 1) for r in rows if r["set"] == part])
        share = np.arange(1, len(e) + 1) / len(e)
        a.step(e, share, where="post", label=part)
        b.step(q, share, where="post", label=part)
    a.axvline(0.25, color="gray", ls=":")
    a.axvline(1.0, color="gray", ls="--")
    b.axvline(0.2, color="gray", ls="--")
    a.set(xlabel="centre error (disc radii)", ylabel="share of photographs", xlim=(0, 1.5),
          title=f"centre ({locator}); dotted: 0.25, dashed: 1 radius")
    b.set(xlabel="|radius found / reference - 1|", xlim=(0, 1), title="radius; dashed: 20 %")
    a.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "disc_errors.png", dpi=90)
    plt.close(fig)
    tiles = []
    for r in sorted(rows, key=lambda r: -r["centre_error_radii"])[:3]:
        im = read_image(r["photo"])
        im = np.dstack([im] * 3) if im.ndim == 2 else im.copy()
        ref = (int(round(r["ref_x"])), int(round(r["ref_y"])))
        cv2.circle(im, ref, int(round(r["ref_r"])), (0, 255, 0), 2)
        if r["x"] is not None:
            cv2.circle(im, (int(round(r["x"])), int(round(r["y"]))), int(round(r["r"])), (255, 0, 255), 2)
        side = int(4 * r["ref_r"])
        im = cv2.copyMakeBorder(im, side, side, side, side, cv2.BORDER_CONSTANT)  # a square crop at any border
        crop = cv2.resize(im[ref[1]:ref[1] + 2 * side, ref[0]:ref[0] + 2 * side], (320, 320))
        cv2.putText(crop, f"{r['image']}: {r['centre_error_radii']:.2f} radii", (6, 20), cv2.FONT_HERSHEY_SIMPLEX,
                    0.55, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(crop)
    cv2.imwrite(str(folder / "disc_worst.png"), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))


def other_cameras(data, folder, seg, locator):
    """disc_other_cameras.jpg: the photographs of STARE, LES-AV and FIVES-mini (no disc references), each
    shrunk to a tile with the disc found drawn (magenta; yellow: not found, the note printed); prints
    how many were found per set."""
    import cv2

    from imio import list_images

    sets = [("STARE", data / "STARE" / "stare-images"),
            ("LES-AV", data / "AV" / "LES-AV" / "training" / "images"),
            ("LES-AV", data / "AV" / "LES-AV" / "test" / "images"),
            ("FIVES-mini", data / "FIVES-mini" / "image")]
    tiles, found = [], {}
    for name, where in sets:
        for photo in list_images(where):
            image = read_image(photo)
            fov = estimate_fov(image)
            d = find_disc(image, seg.segment(image, fov)[1], fov, locator)
            found.setdefault(name, []).append(bool(d["disc_found"]))
            im = image if image.ndim == 3 else np.dstack([image] * 3)
            scale = 160 / max(im.shape[:2])
            tile = cv2.resize(im, (round(im.shape[1] * scale), round(im.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            tile = cv2.copyMakeBorder(tile, 0, 160 - tile.shape[0], 0, 160 - tile.shape[1], cv2.BORDER_CONSTANT)
            if d["disc_x_px"] is not None:
                colour = (255, 0, 255) if d["disc_found"] else (255, 255, 0)
                cv2.circle(tile, (round(d["disc_x_px"] * scale), round(d["disc_y_px"] * scale)),
                           max(2, round(d["disc_radius_px"] * scale)), colour, 1, cv2.LINE_AA)
            cv2.putText(tile, f"{photo.name.split('.')[0][:12]} {d['disc_confidence'] or 0:.2f}", (3, 154),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            if not d["disc_found"]:
                print(f"{name} {photo.name}: {d['disc_note']}")
            tiles.append(tile)
    for name, f in found.items():
        print(f"{name}: disc found in {sum(f)} of {len(f)} photographs")
    while len(tiles) % 10:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i:i + 10]) for i in range(0, len(tiles), 10)])
    cv2.imwrite(str(folder / "disc_other_cameras.jpg"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 85])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("RETINA_DATA", "../shared/data"))
    p.add_argument("--csv", default=None, help="write the per-photograph errors here")
    p.add_argument("--figures", default=None, help="write disc_errors.png and disc_worst.png into this folder")
    p.add_argument("--others", default=None, help="write disc_other_cameras.jpg (STARE, LES-AV, FIVES-mini) here")
    p.add_argument("--locator", default=None,
                   help="classical, or a disc model (.onnx/.pth; default: what disc.py uses, DISC.onnx if shipped)")
    args = p.parse_args(argv)
    locator = default_locator() if args.locator is None else args.locator if args.locator == "classical" else \
        DiscNet.from_file(args.locator)
    seg = Segmenter.from_file(Path(__file__).resolve().parents[1] / "UNet.onnx")
    rows, times = [], []
    for part, name, photo, fov_path, x, y, r in references(Path(args.data)):
        image = read_image(photo)
        fov = read_mask(fov_path) if fov_path else estimate_fov(image)
        _, vessels = seg.segment(image)
        t0 = time.perf_counter()
        d = find_disc(image, vessels, fov, locator)
        times.append(time.perf_counter() - t0)
        # the side of the eye from the reference disc, by disc.py's own rule (None: a disc-centred photograph)
        side = describe(x, y, r, 1.0, fov)["laterality"]
        side = None if side == "unknown" else side
        err = np.hypot(d["disc_x_px"] - x, d["disc_y_px"] - y) / r if d["disc_x_px"] is not None else np.inf
        ratio = d["disc_radius_px"] / r if d["disc_radius_px"] is not None else np.nan
        rows.append(dict(set=part, image=name, photo=str(photo), ref_x=x, ref_y=y, ref_r=r, x=d["disc_x_px"], y=d["disc_y_px"],
                         r=d["disc_radius_px"], found=d["disc_found"], confidence=d["disc_confidence"],
                         centre_error_radii=round(float(err), 3), radius_ratio=round(float(ratio), 3),
                         laterality=d["laterality"], field=d["field"], reference_side=side))
    name = "classical" if locator == "classical" else Path(args.locator or "DISC.onnx").name
    print(f"disc.find_disc ({name}): {np.median(times) * 1000:.0f} ms per photograph (median, after the vessel map)\n")
    print("| set | photographs | found | centre within 1 radius | median centre error (radii) | "
          "radius within ±20 % | median radius ratio | eye's side as the reference disc's |")
    print("|---|---|---|---|---|---|---|---|")
    for part in dict.fromkeys(r["set"] for r in rows):
        sub = [r for r in rows if r["set"] == part]
        e = np.array([r["centre_error_radii"] for r in sub])
        q = np.array([r["radius_ratio"] for r in sub])
        print(f"| {part} | {len(sub)} | {sum(bool(r['found']) for r in sub)} | {100 * np.mean(e <= 1):.1f} % | "
              f"{np.median(e):.2f} | {100 * np.mean(np.abs(q - 1) <= 0.2):.1f} % | {np.nanmedian(q):.2f} | "
              f"{side_agreement(sub)} |")
    if args.figures:
        figures(rows, Path(args.figures), name)
    if args.others:
        other_cameras(Path(args.data), Path(args.others), seg, locator)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
