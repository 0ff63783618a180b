"""Combine models trained from different seeds on the same images into one weights file.

    python train.py --out UNet_seed0.pth
    python train.py --seed 1 --split-seed 0 --out UNet_seed1.pth
    python ensemble.py UNet_seed0.pth UNet_seed1.pth --out UNet.pth

The ensemble averages its members' logits and is used like any weights file (predict.py,
evaluate.py, the web app; an .onnx is written beside it). The members must share architecture,
preprocessing, training and validation images; the threshold is chosen again on those validation
images (the pooled F1 optimum, as training does), never on test images. Inference costs the sum
of the members' time.

Artery/vein models (``train.py --av``) combine the same way; the ensemble is then validated as the task
is (the mean of artery and vein F1 beside the vessel F1, on the members' validation photographs):

    python ensemble.py UNet_AV.pth UNet_AV_seed1.pth --out UNet_AV_pair.pth

Members may differ in the channel they read (``train.py --channel green``): the shipped UNet.pth is

    python train.py --augment strong --out UNet_strong.pth
    python train.py --channel green --out UNet_green.pth        # from the colour images
    python ensemble.py UNet_strong.pth UNet_green.pth --out UNet.pth

and its input then has one channel per kind (gray, green), each member reading its own.

A refit (members trained again on all training images, ``train.py --val-count 0``) leaves no
image to choose a threshold on; it takes the threshold of the ensemble it refits, which was chosen
on validation images, and records where it came from:

    python train.py --augment strong --val-count 0 --out all_strong.pth
    python train.py --channel green --val-count 0 --out all_green.pth
    python ensemble.py all_strong.pth all_green.pth --threshold-from UNet.pth --out UNet_refit.pth

or the threshold of several such ensembles, one per validation fold (``train.py --fold 0, 1, ...``),
chosen on the maps each made of its own held-out images, pooled (every training image once):

    python ensemble.py all_strong.pth all_green.pth --threshold-from pair_f0.pth pair_f1.pth ... --out UNet_refit.pth

The fold-0 members themselves (validated on their few images) may take that threshold as well:
it is the recipe's threshold, chosen on every training image instead of 2 or 4.
"""
import argparse
import sys
from pathlib import Path

from cli import UserError, run_main


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="two or more .pth checkpoints trained on the same images")
    p.add_argument("--out", default="UNet_ensemble.pth", help="weights file to write (default: %(default)s)")
    p.add_argument("--root", default=".", help="folder holding the dataset the members were trained on "
                                               "(default: current folder)")
    p.add_argument("--threshold-from", metavar="REF.pth", nargs="+",
                   help="take the threshold of REF.pth, an ensemble of the same design whose training and "
                        "validation images together are the images the members saw (a refit: their training "
                        "images), instead of choosing it on validation images; several REFs trained with train.py --fold 0, 1, ...: "
                        "the threshold is chosen on their out-of-fold maps of all training images, pooled")
    args = p.parse_args(argv)
    if len(args.members) < 2:
        raise UserError("an ensemble needs two or more checkpoints")

    from trainer import TASKS, check_output, export_onnx_beside, refit_threshold, validation_samples
    from unet import build_model, checkpoint_dict, read_checkpoint, save_checkpoint

    out = Path(args.out)
    check_output(out)
    ckpts = [read_checkpoint(m) for m in args.members]
    first = ckpts[0]
    for path, ck in zip(args.members, ckpts):
        if ck["arch"].get("members", 1) != 1:
            raise UserError(f"{path} is an ensemble already; combine its members instead")
    channels = [ck["preprocess"].get("channel", "gray") for ck in ckpts]
    for path, ck in zip(args.members[1:], ckpts[1:]):
        if ck["arch"] != first["arch"]:
            raise UserError(f"{path}: architecture differs from {args.members[0]}'s")
        if {**ck["preprocess"], "channel": None} != {**first["preprocess"], "channel": None}:
            raise UserError(f"{path}: preprocessing differs from {args.members[0]}'s (only the channel may differ)")
        for key in ("trained_on", "train_images", "val_images"):
            if ck["info"].get(key) != first["info"].get(key):
                raise UserError(f"{path}: {key} differ from {args.members[0]}'s (train with the same --split-seed)")
    if not first["info"].get("val_images") and not args.threshold_from:
        raise UserError(f"{args.members[0]}: no validation images recorded; the threshold cannot be chosen "
                        "(a refit: --threshold-from the ensemble it refits)")

    preprocess = dict(first["preprocess"])
    arch = dict(first["arch"], members=len(ckpts))
    if len(set(channels)) > 1:  # members that see different channels: one input channel each kind
        kinds = list(dict.fromkeys(channels))
        preprocess["channel"] = kinds
        arch["inputs"] = [kinds.index(c) for c in channels]
    model = build_model(arch)
    for member, ck in zip(model.members, ckpts):
        member.load_state_dict(ck["state_dict"])
    model.eval()
    if args.threshold_from:
        threshold, record = refit_threshold(args.threshold_from, arch, preprocess, first["info"], args.root)
        chosen = {"threshold_from": record}
        print(f"threshold {threshold:.3f} from {', '.join(args.threshold_from)} (chosen on "
              f"{'their out-of-fold maps of' if len(args.threshold_from) > 1 else 'its validation images'} "
              f"{', '.join(record['val_images'])})", file=sys.stderr)
    else:
        task = TASKS[preprocess.get("classes", "vessel")]  # a vessel model, or the artery/vein one (av.py)
        m = task.validate(model, preprocess, validation_samples(args.root, first["info"], preprocess))
        keys = ["val_f1", "val_auc", *(k for k in ("val_av_f1", "val_av_accuracy") if k in m)]
        for path, ck in zip(args.members, ckpts):
            print(f"{path}: " + ", ".join(f"{k} {ck['info'].get(k, float('nan')):.4f}" for k in keys), file=sys.stderr)
        print(f"ensemble of {len(ckpts)}: " + ", ".join(f"{k} {m[k]:.4f}" for k in keys)
              + f", threshold {m['val_threshold']:.3f}", file=sys.stderr)
        threshold, chosen = m["val_threshold"], {k: m[k] for k in keys}
    keep = ("trained_on", "train_images", "val_images", "dataset")
    info = {k: first["info"][k] for k in keep if k in first["info"]}
    info["members"] = [{"file": Path(path).name, **{k: ck["info"][k] for k in ("seed", "epochs", "best_epoch", "val_f1",
                                                                               "val_auc", "val_av_f1") if k in ck["info"]}}
                       for path, ck in zip(args.members, ckpts)]
    info.update(chosen)
    save_checkpoint(out, checkpoint_dict(model, preprocess, threshold, info))
    export_onnx_beside(out)
    print(f"weights in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
