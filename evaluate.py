"""Benchmark a model (or any tool's probability maps) on a test set, the way the field reports it.

    python evaluate.py --dataset DRIVE --weights UNet.pth
    python evaluate.py --dataset DRIVE --weights UNet_patch_equalized_patch_256_50.pth
    python evaluate.py --dataset STARE --weights UNet_STARE.pth
    python evaluate.py --dataset DRIVE --pred other_tool/ --threshold 0.5

Under ``torchrun --nproc_per_node=N evaluate.py ...`` the test images are split across the
processes and rank 0 gathers the maps and computes the pooled metrics. Every test image is
segmented with the weights' own method and preprocessing. Metrics are computed inside the FOV (DATASET/test/mask) with pixels pooled over all test images: AUC-ROC,
AUC-PR, F1 (= Dice), accuracy, sensitivity, specificity, MCC, IoU; for F1, sensitivity, specificity and
accuracy also a 95 % interval over the images (the percentile bootstrap, the images resampled with
replacement and their pixels pooled again: metrics.vessel_interval). The binarisation threshold is
the one stored in the weights (chosen on validation images from the training set); nothing is
chosen on the test set. The second observer (DATASET/test/label2) is scored against the first
as the human reference. Writes OUT/per_image.csv, OUT/summary.json, OUT/roc.png, OUT/pr.png.

Beside the pixel metrics, the topology of the thresholded mask against the annotation
(topology.py: clDice, centreline precision and recall, the relative errors of centreline length
and of the numbers of branch and end points, Betti-0/1 errors; per image on the whole FOV, the
summary pooled over the images), for the model and for the second observer alike.

    python evaluate.py --split val --weights f0.pth      # the images f0.pth held out for validation

With --av (an artery/vein model, or --pred maps with NAME_av.png beside them; a set with artery/vein
labels, prepare_data.py --dataset DRIVE-AV or LES-AV), arteries and veins are scored as well (av.py:
per class F1, sensitivity and specificity over the FOV with uncertain pixels left out, the vessel F1
of the union, the classification accuracy on the annotated artery/vein pixels the model finds and on
the annotation's centreline; pixels pooled): OUT/av_per_image.csv and "av" in summary.json, with a
95 % interval of the F1s and the accuracy over the photographs (a bootstrap: av.av_interval).

    python evaluate.py --dataset DRIVE-AV --weights UNet_AV.onnx --av
"""
import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

import distributed
from cli import UserError, add_dataset_args, bounded, run_main, shipped, writable_dir
from dataset import load_sample, pair_files, read_av_label, split_dir
from imio import atomic_replace, read_mask, read_probability, write_csv
from metrics import auc_metrics, confusion, counts_metrics, pooled, vessel_interval
from postprocess import add_postprocess_args, vessel_mask
from preprocess import fov_diameter
import topology

ORDER = ["auc_roc", "auc_pr", "f1", "accuracy", "sensitivity", "specificity", "mcc", "iou"]
COUNTS = ["tp", "fp", "fn", "tn"]  # each image's confusion counts inside its FOV (per_image.csv: pool them again)
TOPOLOGY = topology.COLUMNS
MODEL, HUMAN = "model", "second observer"


def read_prob_map(folder, name, shape):
    for cand in (f"{name}_prob.png", f"{name}.png"):
        path = Path(folder) / cand
        if path.is_file():
            arr = read_probability(path)
            if arr.shape != shape:
                raise UserError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, its test image is {shape[1]}x{shape[0]}")
            return arr
    raise UserError(f"no probability map for {name} in {folder} (expected {name}_prob.png or {name}.png)")


def save_curves(y, p, out, title, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    prec, rec, _ = precision_recall_curve(y, p)
    for fname, xs, ys, xl, yl, key in (("roc.png", fpr, tpr, "false positive rate", "true positive rate", "auc_roc"),
                                       ("pr.png", rec, prec, "recall", "precision", "auc_pr")):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(xs, ys, label=f"{key.upper().replace('_', '-')} {summary[key]:.4f}")
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1.01))
        ax.set_title(title, fontsize=9)
        ax.legend(loc="lower right" if key == "auc_roc" else "lower left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        atomic_replace(out / fname, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), suffix=".png")
        plt.close(fig)


def _round(v):
    return None if v is None else round(float(v), 5)


def topology_scores(samples, masks, rater):
    """Per-image rows (image, rater, ``TOPOLOGY``) and the pooled topology of ``masks`` against the labels."""
    counts = [topology.counts(m, s.label, s.fov) for s, m in zip(samples, masks)]
    rows = [{"image": s.name, "rater": rater, **{k: _round(v) for k, v in topology.scores(c).items()}}
            for s, c in zip(samples, counts)]
    return rows, topology.pooled(counts)


def evaluate(samples, probs, threshold, bridge=False, min_fragment=0, thin=0.0):
    """Pooled metrics (pixels and topology) plus one row per image. The AUCs score the maps; the
    other metrics the masks ``postprocess.vessel_mask`` makes of them (``threshold``; gaps bridged,
    thin vessels kept, specks removed when asked), as predict.py writes them."""
    rows, masks, counts = [], [], []
    for s, p in zip(samples, probs):
        mask = vessel_mask(p, threshold, fov_diameter(s.fov), bridge, min_fragment, thin=thin)
        c = confusion(s.label[s.fov], mask[s.fov])
        m = {**auc_metrics(s.label[s.fov], p[s.fov]), **counts_metrics(*c)}
        rows.append({"image": s.name, "rater": MODEL, **{k: round(m[k], 5) for k in ORDER}, **dict(zip(COUNTS, c))})
        masks.append(mask)
        counts.append(c)
    top_rows, top = topology_scores(samples, masks, MODEL)
    rows = [{**r, **t} for r, t in zip(rows, top_rows)]
    y, p = pooled([(s.label, pr, s.fov) for s, pr in zip(samples, probs)])
    return {**auc_metrics(y, p), **counts_metrics(*map(sum, zip(*counts))), **top}, rows, (y, p)  # counts pooled


def human_reference(root, dataset, samples):
    """The second observer (DATASET/test/label2) scored like a model: (pooled metrics, rows) or None."""
    folder = split_dir(root, dataset, "test") / "label2"
    if not folder.is_dir():
        return None
    masks = []
    for s in samples:
        path = folder / f"{s.name}.png"
        if not path.is_file():
            return None
        masks.append(read_mask(path))
    rows, counts = [], []
    for s, m in zip(samples, masks):
        c = confusion(s.label[s.fov], m[s.fov])
        b = counts_metrics(*c)
        rows.append({"image": s.name, "rater": HUMAN, **{k: round(b[k], 5) for k in ORDER[2:]}, **dict(zip(COUNTS, c))})
        counts.append(c)
    top_rows, top = topology_scores(samples, masks, HUMAN)
    return {**counts_metrics(*map(sum, zip(*counts))), **top}, [{**r, **t} for r, t in zip(rows, top_rows)]


def model_record(weights):
    """What trained ``weights`` (a .pth written by train.py, or a .onnx exported from one) were: its
    ``info`` (training and validation images) and ``preprocess``, as ``inference.load_net`` reads them."""
    if not str(weights).endswith((".pth", ".onnx")):
        raise UserError("--split val needs --weights NAME.pth or NAME.onnx (the model names its validation images)")
    from inference import load_net

    return load_net(weights)[1]


def validation_split(root, weights, record):
    """The samples ``weights`` (whose ``model_record`` is ``record``) held out for validation."""
    from trainer import validation_samples

    if not record["info"].get("val_images"):
        raise UserError(f"{weights} held no images out for validation (trained with --val-count 0?)")
    return validation_samples(root, record["info"], record["preprocess"])


AV_ORDER = ["artery_f1", "vein_f1", "artery_sensitivity", "vein_sensitivity", "artery_specificity",
            "vein_specificity", "vessel_f1", "accuracy_found", "accuracy_centreline"]


def av_labels(root, datasets, split, samples):
    """Attach each sample's artery/vein label (``label_av/`` of the first of ``datasets`` that has it)."""
    for s in samples:
        folders = [split_dir(root, d, split) / "label_av" for d in datasets]
        found = [f / f"{s.name}.png" for f in folders if (f / f"{s.name}.png").is_file()]
        s.classes = read_av_label(found[0] if found else folders[0] / f"{s.name}.png", s.label.shape)


def av_evaluate(samples, classes):
    """Pooled artery/vein scores (av.av_scores) of the class maps ``classes``, one row per image, and
    each image's counts (av.av_counts: what av.av_interval resamples)."""
    from av import add_counts, av_counts, av_scores

    total, rows, per_image = None, [], []
    for s, c in zip(samples, classes):
        counts = av_counts(s.classes, c, s.fov)
        total = add_counts(total, counts)
        per_image.append(counts)
        rows.append({"image": s.name, **{k: _round(v) for k, v in av_scores(counts).items()}})
    return av_scores(total), rows, per_image


def read_av_map(folder, name, shape):
    """``NAME_av.png`` from a --pred folder (predict.py --av's colour map, or class indices)."""
    return read_av_label(Path(folder) / f"{name}_av.png", shape, colour=True,
                         missing="the artery/vein maps of --pred are NAME_av.png, as predict.py --av writes them")


def _interval_json(ranges):
    return {k: None if v is None else [round(v[0], 4), round(v[1], 4)] for k, v in ranges.items()}


def _interval_text(ranges):
    return "; ".join(f"{k} {'-' if v is None else f'{v[0]:.3f}-{v[1]:.3f}'}" for k, v in ranges.items())


def table(title, rows, keys, fmt):
    print(f"\n{title}")
    print("| " + " | ".join(["row"] + keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for name, values in rows:
        print("| " + " | ".join([name] + [fmt(values.get(k)) for k in keys]) + " |")


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    p.add_argument("--split", default="test", choices=["test", "train", "val"],
                   help="which split to score; val: the training images the weights held out for validation "
                        "(named in the .pth), for choosing between models without touching the test set "
                        "(default: %(default)s)")
    p.add_argument("--weights", default=None,
                   help="weights to evaluate, .pth (PyTorch) or .onnx (ONNX Runtime) (default: UNet.pth, the shipped "
                        "one when the current folder has none)")
    p.add_argument("--pred", default=None,
                   help="score probability maps NAME_prob.png/NAME.png from this folder instead "
                        "(16-bit PNG: 0-65535 = 0-1, as predict.py --prob writes; 8-bit: 0-255 = 0-1)")
    p.add_argument("--threshold", type=bounded(float, 0, 1, lo_open=True, hi_open=True), default=None,
                   help="threshold, 0 < T < 1 (default: the one stored in the weights; 0.5 with --pred)")
    add_postprocess_args(p)
    p.add_argument("--tta", action="store_true", help="test-time flip augmentation")
    p.add_argument("--av", action="store_true",
                   help="also score arteries and veins (see above; labels in DATASET/SPLIT/label_av)")
    p.add_argument("--av-pixels", action="store_true",
                   help="with --av: the model classifies pixel by pixel instead of segment by segment")
    p.add_argument("--detail", type=bounded(float, 1, 4), default=None,
                   help="working scale for photographs larger than the training scale (see predict.py --help; "
                        "default: the model's own)")
    p.add_argument("--limit", type=bounded(int, 0), default=0, help="only the first N images (quick checks; not a benchmark)")
    p.add_argument("--out", default=None, help="output folder (default: eval/DATASET_NAME)")
    distributed.add_device_arg(p)
    args = p.parse_args(argv)
    if args.weights is None:
        args.weights = shipped("UNet.pth")

    if args.tree and args.pred:
        raise UserError("--tree uses the tree setting stored in --weights; --pred maps have none (give --threshold)")
    if args.split == "val":
        if args.pred:
            raise UserError("--split val scores --weights on the images they held out; --pred has none")
        record = model_record(args.weights)
        samples = validation_split(args.root, args.weights, record)
    else:
        samples = [load_sample(*t) for t in pair_files(split_dir(args.root, args.dataset, args.split), require_mask=True)]
    if args.limit:
        samples = samples[: args.limit]
    if args.av:
        datasets = [args.dataset]
        if args.split == "val":
            datasets = record["info"]["trained_on"].split("+")
        av_labels(args.root, datasets, "train" if args.split == "val" else args.split, samples)
    source = args.pred or args.weights
    out = writable_dir(args.out or Path("eval") / f"{args.dataset}_{Path(source.rstrip('/')).stem}")
    t0 = time.perf_counter()
    if args.pred:
        probs = [read_prob_map(args.pred, s.name, s.label.shape) for s in samples]
        threshold = 0.5 if args.threshold is None else args.threshold
        method, detail = "external", None
        classes = [read_av_map(args.pred, s.name, s.label.shape) for s in samples] if args.av else None
    else:
        from inference import Segmenter

        seg = Segmenter.from_file(args.weights, flip=args.tta, device=args.device, detail=args.detail,
                                  bridge=args.bridge, min_fragment=args.min_fragment, thin=args.thin_vessels)
        if args.tree:  # the measuring setting: its threshold, bridging, thin vessels and speck removal
            seg.use_tree(args.weights)
            args.bridge, args.min_fragment, args.thin_vessels = seg.bridge, seg.min_fragment, seg.thin
        threshold = seg.threshold = seg.threshold if args.threshold is None else args.threshold  # edge_line's too
        method, detail = seg.pre["method"], seg.detail
        if args.av:
            seg.require_av(args.weights)
        if seg.needs_colour:  # a benchmark figure from gray images would silently be another model's
            from dataset import check_colour

            check_colour(samples, split_dir(args.root, args.dataset, args.split) / "image",
                         f"{args.weights} (it reads the green channel)")
        # under torchrun each process segments every WORLD_SIZE-th image; rank 0 pools them all
        rank, size, _ = distributed.world()
        mine = list(range(len(samples)))[rank::size]
        part = [(i, seg.maps(samples[i].image, samples[i].fov) if args.av else seg.probability(samples[i].image, samples[i].fov))
                for i in tqdm(mine, desc="segmenting", disable=None if rank == 0 else True, file=sys.stderr)]
        distributed.init(None)
        parts = distributed.gather(part)
        distributed.shutdown()
        if rank != 0:
            return
        by_index = dict(item for chunk in parts for item in chunk)
        probs = [by_index[i] for i in range(len(samples))]
        classes = None
        if args.av:  # the vessel mask as predict.py makes it, classified as predict.py --av does
            masks = [seg.mask(m[0], s.fov, threshold) for s, m in zip(samples, probs)]
            classes = [seg.kinds(mk, m[1], s.fov, not args.av_pixels) for s, mk, m in zip(samples, masks, probs)]
            probs = [m[0] for m in probs]
    seconds = time.perf_counter() - t0
    summary, rows, (y, pp) = evaluate(samples, probs, threshold, args.bridge, args.min_fragment, args.thin_vessels)
    human, human_rows = human_reference(args.root, args.dataset, samples) if args.split == "test" else None, []
    if human:
        human, human_rows = human

    write_csv(out / "per_image.csv", rows + human_rows, ["image", "rater"] + ORDER + TOPOLOGY + COUNTS)
    vessel_range = vessel_interval([{"confusion": [r[k] for k in COUNTS]} for r in rows])
    av_summary = None
    if args.av:
        from av import av_interval

        av_summary, av_rows, av_each = av_evaluate(samples, classes)
        av_range = av_interval(av_each)
        write_csv(out / "av_per_image.csv", av_rows, ["image"] + AV_ORDER)
    keep = ORDER + TOPOLOGY
    report = {"dataset": args.dataset, "split": args.split, "images": len(samples), "source": source,
              "method": method, "threshold": threshold, "tree": args.tree, "bridge": args.bridge, "thin_vessels": args.thin_vessels, "min_fragment": args.min_fragment, "tta": args.tta, "detail": detail, "seconds": round(seconds, 2),
              "metrics": {k: None if summary[k] is None else round(summary[k], 4) for k in keep},
              "interval_95": _interval_json(vessel_range),
              "second_observer": {k: None if v is None else round(v, 4) for k, v in human.items()} if human else None,
              "topology": topology.__doc__.split("\n\n")[1].replace("\n", " ")}
    if av_summary is not None:
        report["av"] = {k: _round(av_summary[k]) for k in AV_ORDER}
        report["av_classified"] = "pixel by pixel" if args.av_pixels else "segment by segment"
        report["av_interval_95"] = _interval_json(av_range)
    atomic_replace(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)), suffix=".json")
    save_curves(y, pp, out, f"{args.dataset} {args.split}: {Path(source.rstrip('/')).stem}", summary)

    tidy = "".join([" (the weights' tree setting)" if args.tree else "", ", gaps bridged" if args.bridge else "",
                    f", thin vessels down to {args.thin_vessels:.3f} kept as centrelines" if args.thin_vessels else "",
                    f", specks up to {args.min_fragment} px (at DRIVE's scale) removed" if args.min_fragment else ""])
    print(f"{args.dataset} {args.split}, {len(samples)} images, inside the FOV, pixels pooled; threshold {threshold:.3f}"
          f"{tidy}")
    named = [(Path(source).stem, summary)] + ([(HUMAN, human)] if human else [])
    table("pixels", named, ORDER, lambda v: "-" if v is None else f"{v:.4f}")
    print(f"95 % interval of {Path(source).stem} over the images (bootstrap, images resampled and pooled again): "
          + _interval_text(vessel_range))
    table("topology (per image on the whole FOV; counts pooled, Betti errors averaged over the images)", named, TOPOLOGY,
          lambda v: "-" if v is None else f"{v:.4f}")
    if av_summary is not None:
        table("arteries and veins (uncertain pixels left out; accuracy on the annotated artery/vein pixels found)",
              [(Path(source).stem, av_summary)], AV_ORDER, lambda v: "-" if v is None else f"{v:.4f}")
        print("95 % interval over the photographs (bootstrap, photographs resampled and pooled again): "
              + _interval_text(av_range))
    print(f"wrote {out}/per_image.csv, summary.json, roc.png, pr.png" + (", av_per_image.csv" if args.av else ""))


if __name__ == "__main__":
    main()
