"""Train the U-Net on whole images of DATASET/train (gray + CLAHE, native resolution).

    python train.py                      # DRIVE, writes UNet.pth
    python train.py --dataset STARE --out UNet_STARE.pth
    torchrun --standalone --nproc_per_node=2 train.py      # data-parallel (GPUs or CPU processes)

A validation subset of the training images (--val-count) selects the checkpoint and threshold.
A refit trains the chosen recipe again on all of them and takes the validated run's threshold:

    python train.py --augment strong --val-count 0 --threshold-from UNet_strong.pth --out UNet_strong_all.pth

or the threshold chosen on all training images, each segmented by a run that held it out (folds):

    python train.py --fold 0 --out f0.pth; python train.py --fold 1 --out f1.pth; ...   # to --fold 4 (4 of 20 each)
    python train.py --val-count 0 --threshold-from f0.pth f1.pth f2.pth f3.pth f4.pth --out UNet_all.pth

--also STARE adds another dataset's training images (rescaled by their FOV to DATASET's scale;
the same share of them held out for validation): one model for photographs from more cameras.

--av trains the artery/vein model on a set with artery/vein labels (prepare_data.py --dataset
DRIVE-AV or LES-AV): colour input (--channel rgb), two outputs (vessel; artery given vessel: av.py),
the checkpoint chosen by the mean of artery and vein F1 on the validation images:

    python train.py --av --dataset DRIVE-AV --out UNet_AV.pth

--init fine-tunes trained weights on another set (your camera's labelled photographs, in the
layout prepare_data.py writes), at their working scale, with their size and input:

    python train.py --init UNet_AV.pth --dataset MINE --epochs 100 --lr 1e-3 --out UNet_AV_mine.pth

With a larger --width, --init grows the weights into a wider network that starts out computing
exactly what they do (unet.load_grown) and trains on from there:

    python train.py --init UNet_AV.pth --width 16 --dataset DRIVE-AV --also LES-AV --epochs 150 --lr 1e-3 --out wide.pth

--teacher distils trained models into one network (one network's time at inference): besides the
labels it learns the mean of their probabilities on every training image (losses.DistillationLoss);
they must preprocess as the run does and must not have trained on its validation images:

    python train.py --av --dataset DRIVE-AV --also LES-AV --teacher seed0.pth seed1.pth seed2.pth --out UNet_AV_student.pth

--unlabelled FOLDER adds photographs without labels, learnt from the teachers' maps alone.
"""
import argparse
from collections import namedtuple
from pathlib import Path

import numpy as np

from cli import UserError, bounded, run_main
from dataset import check_colour, load_split, split_dir
from inference import work_scale
from preprocess import CHANNELS, COLOUR, ENHANCERS, enhance, fov_diameter, rescale, to_channels
from trainer import add_training_args, fit, model_arch, parse_training_args, refit_threshold, split_validation


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, epochs=400, batch_size=2, lr=5e-3, val_every=5, out="UNet.pth")
    p.add_argument("--enhance", choices=ENHANCERS, default="clahe",
                   help="contrast enhancement of each whole image (default: %(default)s)")
    p.add_argument("--channel", choices=CHANNELS + (COLOUR,), default=None,
                   help="what the network sees of a colour photograph: its gray level, its green channel or all "
                        "three colour channels (default: gray; rgb with --av)")
    p.add_argument("--av", action="store_true",
                   help="train the artery/vein model (labels in DATASET/train/label_av/, from prepare_data.py "
                        "--dataset DRIVE-AV or LES-AV): vessel map + artery-or-vein map")
    p.add_argument("--kind-weight", type=bounded(float, 0), default=1.0,
                   help="with --av: weight of the artery-or-vein cross-entropy against the vessel loss "
                        "(default: %(default)s)")
    p.add_argument("--detail", type=bounded(float, 1, 4), default=1.0,
                   help="stored in the weights: inference segments a photograph larger than the training scale at "
                        "up to DETAIL times it (for a model trained with a wide --scale; default: %(default)s)")
    p.add_argument("--also", nargs="+", default=[], metavar="DATASET",
                   help="also train on these datasets' training images (e.g. STARE), rescaled to DATASET's FOV scale; "
                        "the same share of each is held out for validation. With --av a set with vessel labels only "
                        "(no label_av/, e.g. STARE: another camera, pathology) teaches the vessel map, its vessels of "
                        "unknown kind (as the annotators' uncertain pixels), and all of it trains: validation scores "
                        "the kinds")
    p.add_argument("--init", metavar="WEIGHTS.pth",
                   help="fine-tune: start from these weights instead of random ones (e.g. UNet_AV.pth, to adapt it to "
                        "your camera with a few labelled photographs); the network's size, its input and its "
                        "working scale are the weights' own, every photograph is brought to that scale; a larger "
                        "--width grows them into a wider network that starts out computing what they do")
    p.add_argument("--teacher", metavar="WEIGHTS", nargs="+",
                   help="distil: besides the labels, learn the mean of these trained models' probabilities on each "
                        "training image (knowledge distillation; e.g. several seeds of the recipe, one network's "
                        "cost at inference); their preprocessing must be this run's, and none may have trained on "
                        "its validation images")
    p.add_argument("--unlabelled", metavar="FOLDER", nargs="+",
                   help="with --teacher: also learn the teachers' maps on the photographs in these folders, which "
                        "have no labels (the labels' loss leaves them out; their FOV is estimated and they are brought "
                        "to the working scale as prediction brings a photograph)")
    p.add_argument("--teacher-weight", type=bounded(float, 0), default=1.0,
                   help="with --teacher: weight of the teachers' term against the labels' loss (default: %(default)s)")
    p.add_argument("--threshold-from", metavar="REF.pth", nargs="+",
                   help="a refit (--val-count 0): store the threshold of REF.pth, the same recipe trained with "
                        "validation images, instead of 0.5 (REF's training and validation images must be this run's "
                        "training images); several REFs trained with --fold 0, 1, ...: the threshold is chosen on "
                        "their out-of-fold maps of all training images, pooled")
    return p


def to_scale(sample, diameter, channel="gray"):
    """A training sample (the network's input image, label) at the scale inference segments it at:
    its FOV rescaled to ``diameter`` pixels (``inference.work_scale``, the Segmenter's own rule)."""
    scale = work_scale(sample.fov, sample.label.shape, diameter)
    return rescale(to_channels(sample.image, channel), scale), rescale(target(sample), scale, label=True)


def load_also(root, dataset, av):
    """``--also DATASET``'s training samples and whether they carry what the run learns. In an artery/vein
    run a set without ``label_av/`` still teaches the vessel map: each vessel pixel is marked uncertain
    (vessel, kind not known: ``losses.ArteryVeinLoss`` leaves it out of the kinds' term)."""
    from av import UNCERTAIN

    kinds = not av or (split_dir(root, dataset, "train") / "label_av").is_dir()
    samples = load_split(root, dataset, "train", av=av and kinds)
    if not kinds:
        for s in samples:
            s.classes = np.where(s.label, UNCERTAIN, 0).astype(np.uint8)
    return samples, kinds


def target(sample):
    """What the network learns of a sample: its artery/vein classes where it has them, else its vessel label."""
    return sample.label if sample.classes is None else sample.classes


TEACHER_KEYS = ("method", "enhance", "channel", "classes", "fov_diameter")  # what a teacher must share


def teacher_maps(paths, images, preprocess, val_names):
    """``--teacher``: each training image's maps by the teachers, the mean of their probabilities as
    uint8 0-255, H x W x K (K: the outputs); ``images`` are the network's inputs (at the working scale,
    enhanced). A teacher must preprocess as this run does (``TEACHER_KEYS``) and must not have trained
    on a validation image (``val_names``), or the checkpoint would be chosen on what it learnt there."""
    from inference import Segmenter, load_net

    total = None
    for path in paths:
        net, meta = load_net(path)
        for key in TEACHER_KEYS:
            if meta["preprocess"].get(key) != preprocess.get(key):
                raise UserError(f"--teacher {path}: its {key} is {meta['preprocess'].get(key)}, not this run's "
                                f"{preprocess.get(key)}")
        seen = set(meta["info"].get("train_images", [])) & set(val_names)
        if seen:
            raise UserError(f"--teacher {path} trained on validation image {sorted(seen)[0]}: "
                            "validate on other images (--split-seed) or take another teacher")
        seg = Segmenter(net, meta["preprocess"])
        maps = [seg.network_maps(image) for image in images]
        total = maps if total is None else [t + m for t, m in zip(total, maps)]
    return [np.round(255 * np.clip(t.transpose(1, 2, 0) / len(paths), 0, 1)).astype(np.uint8) for t in total]


def unlabelled_pairs(folders, diameter, channel):
    """``--unlabelled``: (the network's input, a label of ``losses.UNLABELLED`` inside the estimated FOV)
    of every photograph in ``folders``, at the working scale (``to_scale``, as the labelled ones)."""
    from dataset import Sample
    from imio import list_images, read_image
    from losses import UNLABELLED
    from preprocess import estimate_fov

    pairs = []
    for folder in folders:
        files = list_images(folder, "photographs")
        if not files:
            raise UserError(f"--unlabelled {folder}: no photographs there")
        for path in files:
            image = read_image(path)
            fov = estimate_fov(image)
            sample = Sample(path.stem, image, np.where(fov, UNLABELLED, 0).astype(np.uint8), fov)
            if channel != "gray":
                check_colour([sample], f"--unlabelled {folder}", f"--channel {channel}")
            pairs.append(to_scale(sample, diameter, channel))
    return pairs


Start = namedtuple("Start", "state_dict preprocess threshold record")


INIT_KEYS = ("width", "depth", "stages", "enhance", "channel", "av")  # what --init takes from the weights


def given_options(parser, argv, keys):
    """Those of ``keys`` (argument names) that the command line sets itself, default or not: parsed
    again into a namespace where each starts as a marker, which argparse keeps unless the option is given
    (``--width 8`` is given, though 8 is the default)."""
    unset = object()
    again = parser.parse_args(argv, argparse.Namespace(**{k: unset for k in keys}))
    return {k for k in keys if getattr(again, k) is not unset}


def start_weights(path, args, given):
    """``--init``: a ``Start``: the weights to fine-tune, the preprocessing they were trained with
    (which the new run keeps: input channels, enhancement, classes, working scale), their threshold
    and what the new weights record of them. ``args`` takes the network's size from them; a size, input or task set on
    the command line (``given``: the names of the options it sets) that differs from theirs is refused in one line,
    except a larger width, which grows them."""
    from unet import read_checkpoint

    ckpt = read_checkpoint(path)
    arch, pre = dict(ckpt["arch"]), ckpt["preprocess"]
    if arch.pop("members", 1) != 1:
        raise UserError(f"--init {path}: an ensemble; fine-tune one of its members")
    theirs = {"width": arch["width"], "depth": arch["depth"], "stages": arch.get("stages", 1),
              "enhance": pre.get("enhance"), "channel": pre.get("channel", "gray"), "av": pre.get("classes") == "av"}
    if pre.get("method") != "whole":
        raise UserError(f"--init {path}: weights of the patch pipeline (train_patch.py); fine-tune them there")
    if args.av and not theirs["av"]:
        raise UserError(f"--init {path}: a vessel model; --av fine-tunes an artery/vein model (e.g. UNet_AV.pth)")
    grow = "width" in given and args.width > theirs["width"] and theirs["stages"] == 1
    if grow:  # a wider network grown from theirs (unet.load_grown)
        theirs["width"] = args.width
    for key, value in theirs.items():
        if key in given and getattr(args, key) != value:
            raise UserError(f"--init {path}: its {key} is {value}, not {getattr(args, key)}; leave --{key} out"
                            + (" or make it wider" if key == "width" and theirs["stages"] == 1 else ""))
        setattr(args, key, value)
    record = {"file": Path(path).name, "trained_on": ckpt["info"].get("trained_on")}
    if grow:
        record["grown_from_width"] = arch["width"]
    return Start(ckpt["state_dict"], pre, ckpt["threshold"], record)


@run_main
def main(argv=None):
    parser = build_parser()
    args = parse_training_args(parser, argv)
    init = start_weights(args.init, args, given_options(parser, argv, INIT_KEYS)) if args.init else None
    if args.channel is None:
        args.channel = COLOUR if args.av else "gray"
    if args.kind_weight != 1.0 and not args.av:
        raise UserError("--kind-weight weighs the artery/vein term: use it with --av")
    if args.unlabelled and not args.teacher:
        raise UserError("--unlabelled photographs are learnt from the teachers' maps: give --teacher too")
    if args.teacher_weight != 1.0 and not args.teacher:
        raise UserError("--teacher-weight weighs the teachers' term: use it with --teacher")
    if args.augment == "camera" and args.channel == COLOUR:
        raise UserError("--augment camera alters one channel; use it with --channel gray or green, not rgb")
    samples = load_split(args.root, args.dataset, "train", av=args.av)
    if args.channel != "gray":
        check_colour(samples, f"{args.dataset}/train/image", f"--channel {args.channel}")
    train_names, val_names = split_validation([s.name for s in samples], args.val_count, args.split_seed, args.fold)
    train = [s for s in samples if s.name in train_names]
    val = [s for s in samples if s.name in val_names]
    if init is None:  # DATASET at its native resolution
        diameter = round(float(np.median([fov_diameter(s.fov) for s in samples])), 1)
        pairs = [(to_channels(s.image, args.channel), target(s)) for s in train]
    else:  # the scale the weights learnt at: every photograph brought to it
        diameter = init.preprocess["fov_diameter"]
        pairs = [to_scale(s, diameter, args.channel) for s in train]
    vessels_only = []  # --also sets whose kinds are not known (--av)
    for other in args.also:
        extra, kinds = load_also(args.root, other, args.av)
        if not kinds:
            vessels_only.append(other)
        if args.channel != "gray":
            check_colour(extra, f"{other}/train/image", f"--channel {args.channel}")
        count = round(len(extra) * args.val_count / len(samples)) if kinds else 0
        keep, held = split_validation([s.name for s in extra], count, args.split_seed, args.fold)
        pairs += [to_scale(s, diameter, args.channel) for s in extra if s.name in keep]
        val += [s for s in extra if s.name in held]  # validated like any photograph: the Segmenter rescales
        train_names += [f"{other}/{n}" for n in keep]
        val_names += [f"{other}/{n}" for n in held]
    if args.unlabelled:  # the teachers' maps their only target
        extra = unlabelled_pairs(args.unlabelled, diameter, args.channel)
        pairs += extra
        info_unlabelled = {"folders": [Path(f).as_posix() for f in args.unlabelled], "photographs": len(extra)}
    preprocess = {
        "method": "whole",
        "enhance": args.enhance,
        "fov_diameter": diameter,
    }
    if args.channel != "gray":
        preprocess["channel"] = args.channel  # absent: gray, as in weights from before this option
    if args.av:
        preprocess["classes"] = "av"  # absent: one output, vessels
    if args.detail != 1.0:
        preprocess["detail"] = args.detail
    elif init is not None and "detail" in init.preprocess:
        preprocess["detail"] = init.preprocess["detail"]
    if init is not None and "edge_line" in init.preprocess:  # the start's setting against a line along the FOV's
        preprocess["edge_line"] = init.preprocess["edge_line"]  # edge (UNet_AV's; inference.Segmenter.clear_edge_lines)
    look = None
    if args.augment == "camera":  # a new camera look for every draw, enhanced after it
        from training_data import CameraLook

        look = CameraLook(lambda gray: enhance(gray, args.enhance))
        images = [gray for gray, _ in pairs]
    else:
        images = [enhance(gray, args.enhance) for gray, _ in pairs]
    info = {"trained_on": "+".join([args.dataset, *args.also]), "train_images": train_names, "val_images": val_names}
    if vessels_only:
        info["vessels_only"] = vessels_only
    if init is not None:
        info["fine_tuned_from"] = init.record
    threshold_from = None
    if args.threshold_from:
        if val_names:
            raise UserError("--threshold-from is for a refit on all training images: add --val-count 0")
        from unet import build_model

        arch = build_model(model_arch(args, preprocess)).arch
        threshold_from = refit_threshold(args.threshold_from, arch, preprocess, info, args.root)
    elif init is not None and not val_names:  # fine-tuned with nothing to validate on: the start's threshold
        threshold_from = init.threshold, {"file": init.record["file"], "fine_tuned_from": True}
    labels = [label for _, label in pairs]
    if args.teacher:
        inputs = images if look is None else [enhance(gray, args.enhance) for gray in images]
        labels = [np.dstack([label, maps]) for label, maps in
                  zip(labels, teacher_maps(args.teacher, inputs, preprocess, val_names))]
        info["distilled_from"] = {"files": [Path(p).name for p in args.teacher], "weight": args.teacher_weight}
        if args.unlabelled:
            info["distilled_from"]["unlabelled"] = info_unlabelled
    fit(args, images, labels, val, preprocess, info, look, threshold_from,
        init=init.state_dict if init is not None else None)


if __name__ == "__main__":
    main()
