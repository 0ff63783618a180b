"""Do the vessel measurements of the model's masks agree with those of the manual annotations?

Measures, with morphometry.py, every photograph of a test set three ways: the first observer's
annotation (the reference), the shipped model's mask (predict.py's defaults) and, where the set has
one, the second observer's annotation (the human reference for disagreement). All inside the same
FOV (DRIVE's official masks; estimated from the photograph elsewhere). Prints, per measure, the
mean of each, the relative bias (the mean over images of (other - reference) / reference) and
Pearson's correlation over the images, as a Markdown table.

    python docs/measure_agreement.py --dataset DRIVE                  # 20 test images, UNet.onnx
    python docs/measure_agreement.py --dataset STARE                  # 10 test images, UNet_STARE.onnx
    python docs/measure_agreement.py --dataset FIVES                  # 19 FIVES-mini photographs, UNet.onnx
    python docs/measure_agreement.py --dataset DRIVE --tree           # the model's masks at its tree setting
    python docs/measure_agreement.py --dataset DRIVE-AV               # 20 test images, UNet_AV.onnx
    python docs/measure_agreement.py --dataset LES-AV                 # 11 test images (1620x1444), UNet_AV.onnx

For the artery/vein sets (AV/DRIVE_AV, AV/LES-AV, their official FOV masks) the reference is the
manual artery/vein annotation and the model is the artery/vein model (predict.py --av's defaults):
CRAE, CRVE and AVR (av.py, Knudtson et al. 2003) and each measure of the arteries alone and of the
veins alone. Both are measured round the same optic disc (found by disc.py in the photograph with
the model's vessel mask, as predict.py --av --measure does), so a difference is the classes' and
the vessels', not the zone's. Bias here is the mean over images of (model - reference) / reference.
Then how many of the vessels the model's CRAE and CRVE are made of have that kind in the annotation.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imio import read_image, read_mask, stem  # noqa: E402
from inference import Segmenter  # noqa: E402
from morphometry import measure_and_write, measure_mask  # noqa: E402
from preprocess import estimate_fov  # noqa: E402

MEASURES = ["vessel_area_density", "centreline_length_px", "mean_calibre_px", "calibre_weighted_px", "fd_mask",
            "fd_centreline", "distance_factor", "curvature_tortuosity_per_px2", "tortuosity_density_per_px",
            "n_end_points", "n_branch_points", "n_segments", "branching_angle_deg"]
STARE_TEST = ["im0162", "im0163", "im0235", "im0236", "im0239", "im0240", "im0255", "im0291", "im0319", "im0324"]


AV_MEASURES = ["crae_px", "crve_px", "avr", "n_arteries_zoneB", "n_veins_zoneB"] + [
    f"{kind}_{m}" for kind in ("artery", "vein") for m in ("vessel_area_density", "centreline_length_px",
                                                           "mean_calibre_px", "distance_factor", "fd_mask")]
AV_SETS = {"DRIVE-AV": "DRIVE_AV", "LES-AV": "LES-AV"}


def values(rows, m):
    """Measure ``m`` of each row, NaN where it is empty."""
    return np.array([np.nan if r.get(m) is None else r[m] for r in rows], float)


def compare(reference, other, m):
    """(mean of ``other``, bias in %: the mean over images of (other - reference) / reference, Pearson's r,
    images with both) of measure ``m``."""
    ref, val = values(reference, m), values(other, m)
    ok = np.isfinite(ref) & np.isfinite(val) & (ref != 0)
    bias = np.mean((val[ok] - ref[ok]) / ref[ok]) * 100 if ok.any() else float("nan")
    r = np.corrcoef(ref[ok], val[ok])[0, 1] if ok.sum() > 2 else float("nan")
    return np.nanmean(val), bias, r, int(ok.sum())


def items(dataset, data):
    """(name, photograph, FOV or None, first observer, second observer or None) of the test set."""
    if dataset in AV_SETS:
        d = data / "AV" / AV_SETS[dataset] / "test"
        for f in sorted((d / "images").iterdir()):
            yield stem(f), f, d / "mask" / f"{stem(f)}_mask.gif", d / "1st_manual" / f"{stem(f)}.png", None
    elif dataset == "DRIVE":
        d = data / "DRIVE" / "test"
        for f in sorted((d / "images").glob("*_test.tif")):
            n = f.name[:2]
            yield (n, f, d / "mask" / f"{n}_test_mask.gif", d / "1st_manual" / f"{n}_manual1.gif",
                   d / "2nd_manual" / f"{n}_manual2.gif")
    elif dataset == "STARE":
        d = data / "STARE"
        for n in STARE_TEST:
            yield (n, d / "stare-images" / f"{n}.ppm.gz", None, d / "labels-ah" / f"{n}.ah.ppm.gz",
                   d / "labels-vk" / f"{n}.vk.ppm.gz")
    else:
        d = data / "FIVES-mini"
        for f in sorted((d / "image").glob("*.png")):
            yield stem(f), f, None, d / "label" / f.name, None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["DRIVE", "STARE", "FIVES", *AV_SETS], default="DRIVE")
    p.add_argument("--data", default=os.environ.get("RETINA_DATA", "../shared/data"))
    p.add_argument("--weights", default=None,
                   help="default: UNet_STARE.onnx for STARE, UNet_AV.onnx for the artery/vein sets, else UNet.onnx")
    p.add_argument("--tree", action="store_true",
                   help="the model's masks at its tree setting (predict.py --tree), not its pixel threshold")
    args = p.parse_args(argv)
    weights = args.weights or {"STARE": "UNet_STARE.onnx", **dict.fromkeys(AV_SETS, "UNet_AV.onnx")}.get(
        args.dataset, "UNet.onnx")
    seg = Segmenter.from_file(weights)
    if args.tree:
        seg.use_tree(weights)
    if args.dataset in AV_SETS:
        return av_agreement(args.dataset, Path(args.data), seg, weights)
    rows = {"reference": [], "model": [], "second observer": []}
    times = []
    for name, photo, fov_file, first, second in items(args.dataset, Path(args.data)):
        image = read_image(photo)
        fov = read_mask(fov_file) if fov_file else estimate_fov(image)
        _, mask = seg.segment(image)
        masks = {"reference": read_mask(first), "model": mask}
        if second:
            masks["second observer"] = read_mask(second)
        for k, m in masks.items():
            t0 = time.perf_counter()
            row, _, _ = measure_mask(m, fov)
            times.append(time.perf_counter() - t0)
            rows[k].append(row)
    n = len(rows["reference"])
    others = [k for k in ("model", "second observer") if rows[k]]
    print(f"{args.dataset}: {n} images, model {weights}{' (tree setting)' if args.tree else ''}; measuring took {np.median(times):.2f} s per mask (median)\n")
    head = "| measure | reference (1st observer) mean | " + " | ".join(
        f"{k} mean | {k} bias | {k} r" for k in others) + " |"
    print(head)
    print("|" + "---|" * (2 + 3 * len(others)))
    for m in MEASURES:
        cells = [m, f"{np.nanmean(values(rows['reference'], m)):.4g}"]
        for k in others:
            mean, bias, r, _ = compare(rows["reference"], rows[k], m)
            cells += [f"{mean:.4g}", f"{bias:+.1f} %", f"{r:.2f}"]
        print("| " + " | ".join(cells) + " |")


def av_agreement(dataset, data, seg, weights):
    """The artery/vein measures of the model's classes against the manual annotation's (module docstring)."""
    import tempfile

    from av import knudtson_kind_agreement, read_classes
    from disc import find_disc

    rows = {"reference": [], "model": []}
    used = {"artery": np.zeros(3, int), "vein": np.zeros(3, int)}
    tmp = Path(tempfile.mkdtemp())
    for name, photo, fov_file, first, _ in items(dataset, data):
        image = read_image(photo)
        fov = read_mask(fov_file)
        _, mask, _, classes = seg.segment_av(image, fov)
        disc = find_disc(image, mask, fov)
        manual = read_classes(read_image(first))
        for k, c in (("reference", manual), ("model", classes)):
            rows[k].append(measure_and_write(name, c > 0, tmp, fov=fov, photo=image, disc=disc, av_classes=c))
        if disc.get("disc_found"):
            for kind, counts in knudtson_kind_agreement(classes, manual, fov, disc).items():
                used[kind] += counts
    found = sum(bool(r["disc_found"]) for r in rows["model"])
    print(f"{dataset} test: {len(rows['model'])} images ({found} with a disc found), model {weights}\n")
    print("| measure | reference mean | model mean | model bias | r | images with both |")
    print("|---|---|---|---|---|---|")
    for m in AV_MEASURES:
        mean, bias, r, n = compare(rows["reference"], rows["model"], m)
        print(f"| {m} | {np.nanmean(values(rows['reference'], m)):.4g} | {mean:.4g} | {bias:+.1f} % | {r:.2f} | {n} |")
    print("\nThe vessels the model's CRAE and CRVE are made of (the six widest of each kind crossing zone B, all "
          "photographs), by their kind in the manual annotation (av.knudtson_kind_agreement):\n")
    print("| model's vessels | count | same kind | the other kind | neither (background or uncertain) |")
    print("|---|---|---|---|---|")
    for kind, (same, other, neither) in used.items():
        n = same + other + neither
        print(f"| {kind} (for {'CRAE' if kind == 'artery' else 'CRVE'}) | {n} | {same} ({same / max(n, 1):.1%}) | "
              f"{other} ({other / max(n, 1):.1%}) | {neither} ({neither / max(n, 1):.1%}) |")


if __name__ == "__main__":
    main()
