"""The training loop shared by train.py (whole images) and train_patch.py (patches).

One epoch = one pass over the training samples (shuffled, augmented). Every ``val_every`` epochs
the model segments the validation images (held out from the *training* set -- the test set is
never looked at) through the same inference code as prediction; the checkpoint with the best
validation F1 is kept, with the F1-optimal validation threshold stored in it.

Devices and processes: ``--device`` picks CPU, CUDA or MPS; on CUDA the loop uses automatic
mixed precision (bf16 where supported, else fp16 with a gradient scaler), channels-last and
cuDNN autotuning, and prepares batches in DataLoader workers. Under ``torchrun`` the same loop
runs data-parallel (DistributedDataParallel): each epoch's samples are split across processes
without overlap (DistributedSampler: reshuffled every epoch from --seed), gradients are
averaged, and only rank 0 validates, logs, shows progress and writes files. ``--batch-size`` is
per process: the global batch is batch size x processes (x --accumulate); the learning rate is
not scaled automatically (scale --lr yourself if you change the global batch). BatchNorm is
synchronised across GPUs (SyncBatchNorm); on CPUs PyTorch has no SyncBatchNorm, so each process
normalises over its own batch -- exactly what one process computes with --accumulate = the
number of processes. With --ema, every process measures the average's BatchNorm statistics over
its share of the samples and they are averaged over the processes.

Files written next to ``--out`` (all atomically, by rank 0):
  OUT              best weights + architecture + preprocessing + threshold (what inference loads)
  OUT.resume.pth   full state after the last completed epoch (``--resume`` continues from it)
  OUT.log.csv      one row per epoch: loss, validation F1/AUC, threshold, learning rate, time
"""
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm import tqdm

import distributed
from cli import UserError, add_dataset_args, bounded, warn, writable_dir
from training_data import VesselDataset, augmentation, pad_collate
from imio import write_csv
from inference import Segmenter
from losses import ArteryVeinLoss, CEDiceLoss, DistillationLoss
from metrics import best_threshold, pooled
from preprocess import input_channels
from unet import build_model, checkpoint_dict, count_parameters, load_grown, save_checkpoint, tune_malloc

LOG_FIELDS = ["epoch", "train_loss", "val_f1", "val_auc", "val_threshold", "lr", "seconds"]


def add_training_args(parser, *, epochs, batch_size, lr, val_every, out):
    """Flags common to both training scripts."""
    add_dataset_args(parser)
    parser.add_argument("--epochs", type=bounded(int, 1), default=epochs, help="training epochs, >= 1 (default: %(default)s)")
    parser.add_argument("--batch-size", type=bounded(int, 1), default=batch_size, help="samples per step, >= 1 (default: %(default)s)")
    parser.add_argument("--lr", type=bounded(float, 0, 1, lo_open=True), default=lr, help="peak learning rate, AdamW + cosine decay (default: %(default)s)")
    parser.add_argument("--width", type=bounded(int, 1, 256), default=8, help="U-Net channels at full resolution (default: %(default)s; the original: 64)")
    parser.add_argument("--depth", type=bounded(int, 2, 8), default=4, help="U-Net resolution levels (default: %(default)s; the original: 5)")
    parser.add_argument("--val-count", type=bounded(int, 0), default=4, help="training images held out for validation (default: %(default)s)")
    parser.add_argument("--fold", type=bounded(int, 0), default=0,
                        help="which --val-count images to hold out: fold K holds out the K-th of the disjoint sets "
                             "drawn from --split-seed (0: the usual split); folds 0, 1, ... together hold out every "
                             "image once, for a threshold chosen on all of them (--threshold-from FOLD0.pth "
                             "FOLD1.pth ...; default: %(default)s)")
    parser.add_argument("--val-every", type=bounded(int, 1), default=val_every, help="validate every N epochs (default: %(default)s)")
    parser.add_argument("--dice-weight", type=bounded(float, 0), default=1.0,
                        help="weight of the soft-Dice term in the loss (cross-entropy weight 1; default: %(default)s)")
    parser.add_argument("--cldice-weight", type=bounded(float, 0), default=0.0,
                        help="weight of a soft-clDice term (a topology term on soft skeletons, Shit et al. 2021) "
                             "added to the loss (0: off; default: %(default)s)")
    parser.add_argument("--skeleton-weight", type=bounded(float, 0), default=0.0,
                        help="weight of a skeleton-recall term (the share of the annotated centreline found, so thin "
                             "vessels count as much as wide ones; Kirchhoff et al. 2024) added to the loss (0: off; "
                             "default: %(default)s)")
    parser.add_argument("--stages", type=int, choices=[1, 2], default=1,
                        help="1: one U-Net; 2: two in sequence (W-Net), the loss on both (default: %(default)s)")
    parser.add_argument("--crop", type=bounded(int, 0, 4096), default=0,
                        help="train on random CROP x CROP windows instead of whole samples (0: whole; default: %(default)s)")
    parser.add_argument("--augment", choices=["default", "strong", "camera", "none"], default="default",
                        help="data augmentation: default = flips, rotations, rescaling, brightness/contrast; strong "
                             "adds gamma and blur/sharpening (other cameras' look) after contrast enhancement; "
                             "camera (train.py) adds uneven illumination, gamma, blur and noise before it; none "
                             "(default: %(default)s)")
    parser.add_argument("--scale", type=bounded(float, 0.25, 4), nargs=2, default=[0.9, 1.1], metavar=("LO", "HI"),
                        help="random rescaling range of the augmentation, 0.25..4 (default: %(default)s); a wider "
                             "range shows the network vessels at more widths (measured for large photographs in "
                             "docs/experiments.md: no gain there)")
    parser.add_argument("--ema", type=bounded(float, 0, 1, hi_open=True), default=0.0, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights, updated every "
                             "step with this decay (e.g. 0.998; 0: off, the trained weights themselves; "
                             "default: %(default)s)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0, help="random seed: same seed, same result on CPU (default: %(default)s)")
    parser.add_argument("--split-seed", type=bounded(int, 0, 2**32 - 1), default=None,
                        help="seed of the validation split only (default: --seed); another --seed with the same "
                             "--split-seed trains a second model on the same images (seed spread, ensembles)")
    parser.add_argument("--threads", type=bounded(int, 0, 1024), default=0,
                        help="CPU threads for torch (default: 0 = all cores)")
    parser.add_argument("--accumulate", type=bounded(int, 1, 1024), default=1,
                        help="micro-batches of --batch-size per optimizer step (a larger batch in the same memory; "
                             "default: %(default)s)")
    parser.add_argument("--workers", type=bounded(int, -1, 64), default=-1,
                        help="DataLoader worker processes preparing batches (default: -1 = 4 on CUDA, 0 on CPU)")
    distributed.add_device_arg(parser)
    parser.add_argument("--out", default=out, help="weights file to write (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.resume.pth")


def parse_training_args(parser, argv=None):
    """Parse, and refuse a device that is not there before any data is read."""
    args = parser.parse_args(argv)
    if args.scale[0] > args.scale[1]:
        parser.error(f"argument --scale: LO {args.scale[0]} is larger than HI {args.scale[1]}")
    if args.split_seed is None:
        args.split_seed = args.seed
    distributed.resolve_device(args.device)
    return args


def check_output(out, backup=True):
    """Refuse an unusable --out before any work; keep a copy of weights a new run will replace."""
    if out.suffix != ".pth":
        raise UserError(f"--out {out}: the weights file name must end in .pth")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in .pth")
    writable_dir(out.parent if str(out.parent) else ".", "folder of --out")
    if backup and out.is_file():
        backup = out.with_name(out.name + ".bak")
        import shutil

        shutil.copy2(out, backup)  # a run the user regrets never loses the weights it replaced
        print(f"{out} exists: kept a copy as {backup}; this run writes its best weights to {out}", file=sys.stderr)


def export_onnx_beside(out):
    """Write OUT with .onnx beside the final weights (for inference without PyTorch)."""
    try:
        from onnx_model import export

        print(f"exported {export(out)} (for inference without PyTorch)", file=sys.stderr)
    except ImportError as exc:
        warn(f"ONNX export skipped ({exc}); install onnx and run: python export_onnx.py {out}")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_validation(names, count, seed, fold=0):
    """Deterministically hold out ``count`` of the training image names for validation.

    Fold K holds out the K-th of disjoint sets drawn one after another from the same random stream,
    so fold 0 is the split without folds and folds 0, 1, ... hold out every image once."""
    names = sorted(names)
    if count >= len(names):
        raise UserError(f"--val-count {count} leaves no training images (the set has {len(names)})")
    if fold and (fold + 1) * count > len(names):
        raise UserError(f"--fold {fold}: {len(names)} images make only {len(names) // max(count, 1)} folds of "
                        f"--val-count {count} (0 to {len(names) // max(count, 1) - 1})")
    rng = np.random.default_rng(seed)
    left, held = names, set()
    for _ in range(fold + 1):
        held = set(rng.choice(left, size=count, replace=False).tolist()) if count > 0 else set()
        left = [n for n in left if n not in held]
    return [n for n in names if n not in held], sorted(held)


def refit_reference(path, arch, preprocess, info):
    """The checkpoint whose threshold a refit takes (``--threshold-from``): a model of the same design
    (``arch``, ``preprocess``), trained and validated on exactly the images the refit trains on
    (``info``; for an ensemble of validated members: the images they were trained and validated on),
    so its threshold was chosen on validation images for this very recipe."""
    from unet import read_checkpoint

    ref = read_checkpoint(path)
    if ref["arch"] != arch or ref["preprocess"] != preprocess:
        raise UserError(f"--threshold-from {path}: not the same design (architecture, ensemble members and their "
                        "channels, preprocessing)")
    if not ref["info"].get("val_images") or ref["info"].get("trained_on") != info.get("trained_on") \
            or images_seen(ref["info"]) != images_seen(info):
        raise UserError(f"--threshold-from {path}: its training and validation images are not the images the "
                        "refit was trained (and validated) on")
    return ref


def images_seen(info):
    """The training and validation images of a checkpoint's ``info``, together."""
    return set(info.get("train_images", [])) | set(info.get("val_images", []))


def refit_threshold(paths, arch, preprocess, info, root):
    """The threshold a refit takes (``--threshold-from``) and what its weights record of it.

    One reference: its own threshold, chosen on its validation images. Several (``train.py --fold``
    0, 1, ...): each segments its own validation images -- ones it never trained on -- and the
    threshold is the F1 optimum of those out-of-fold maps pooled; together their validation images
    must be every image of the refit (``images_seen``), each once. An ensemble of the fold-0 members
    may take it too: it is the threshold of the recipe, chosen on all its images instead of 2 or 4."""
    refs = [refit_reference(path, arch, preprocess, info) for path in paths]
    if len(refs) == 1:
        ref = refs[0]
        record = {"file": Path(paths[0]).name,
                  **{k: ref["info"][k] for k in ("val_images", "val_f1", "val_auc") if k in ref["info"]}}
        return ref["threshold"], record
    held = [name for ref in refs for name in ref["info"]["val_images"]]
    if len(held) != len(set(held)) or set(held) != images_seen(info):
        raise UserError("--threshold-from: the references' validation images must be all the refit's images, "
                        "each held out once (train them with --fold 0, 1, ...)")
    from unet import load_model

    pairs = []
    for path, ref in zip(paths, refs):
        model, _ = load_model(path)  # as inference runs it
        pairs += validation_maps(model, preprocess, validation_samples(root, ref["info"], preprocess))
    m = score(pairs)
    record = {"files": [Path(p).name for p in paths], "val_images": sorted(held), "out_of_fold": True,
              "val_f1": m["val_f1"], "val_auc": m["val_auc"]}
    return m["val_threshold"], record


def validation_samples(root, info, preprocess):
    """The validation images a checkpoint's ``info`` names (``OTHER/name`` for ``train.py --also``),
    refused in one line if gray while ``preprocess`` reads a colour channel."""
    from dataset import check_colour, load_split
    from preprocess import reads_colour

    primary = info["trained_on"].split("+")[0]
    wanted = {}
    for name in info["val_images"]:
        dataset, _, stem = name.rpartition("/")
        wanted.setdefault(dataset or primary, set()).add(stem)
    samples = []
    for dataset, stems in wanted.items():
        found = [s for s in load_split(root, dataset, "train", av=preprocess.get("classes") == "av") if s.name in stems]
        missing = stems - {s.name for s in found}
        if missing:
            raise UserError(f"{Path(root) / dataset / 'train'}: validation image {sorted(missing)[0]} not found")
        samples += found
    if reads_colour(preprocess.get("channel", "gray")):
        check_colour(samples, f"{root}: validation images", "a model trained with --channel green")
    return samples


def validation_maps(model, preprocess, samples):
    """(label, probability map, FOV) of each sample, segmented as inference does."""
    seg = Segmenter(model, preprocess)
    return [(s.label, seg.probability(s.image, s.fov), s.fov) for s in samples]


def score(pairs):
    """Pooled F1 at its best threshold, and AUC-ROC, inside the FOV."""
    y, p = pooled(pairs)
    threshold, f1 = best_threshold(y, p)
    return {"val_f1": f1, "val_auc": float(roc_auc_score(y, p)), "val_threshold": threshold}


def validate(model, preprocess, samples):
    """Pooled validation F1 at its best threshold, and AUC-ROC, inside the FOV."""
    return score(validation_maps(model, preprocess, samples))


class VesselTask:
    """What a vessel model learns, as ``fit`` sees it: its number of outputs, its loss, its
    validation score (``score_key`` picks the checkpoint) and the extra columns of its log."""

    outputs = 1
    score_key = "val_f1"
    log_fields = ()

    def loss(self, args):
        return CEDiceLoss(dice_weight=args.dice_weight, cldice_weight=args.cldice_weight,
                          skeleton_weight=args.skeleton_weight)

    def validate(self, model, preprocess, samples):
        return validate(model, preprocess, samples)


class ArteryVeinTask(VesselTask):
    """The artery/vein model (preprocess ``classes: av``; av.py): two outputs, the vessel loss on the
    first plus the artery-or-vein cross-entropy on the second (losses.ArteryVeinLoss); validated by
    the vessel F1 and AUC as a vessel model is, and by the mean of artery and vein F1 (av.av_scores,
    the vessel mask at the F1-best threshold), which picks the checkpoint."""

    outputs = 2
    score_key = "val_av_f1"
    log_fields = ("val_av_f1", "val_av_accuracy")

    def loss(self, args):
        return ArteryVeinLoss(super().loss(args), kind_weight=getattr(args, "kind_weight", 1.0))

    def validate(self, model, preprocess, samples):
        from av import add_counts, av_counts, av_scores, classify

        seg = Segmenter(model, preprocess)
        maps = [seg.maps(s.image, s.fov) for s in samples]
        m = score([(s.label, mp[0], s.fov) for s, mp in zip(samples, maps)])
        counts = None
        for s, mp in zip(samples, maps):
            classes = classify(seg.mask(mp[0], s.fov, m["val_threshold"]), mp[1])
            counts = add_counts(counts, av_counts(s.classes, classes, s.fov))
        scores = av_scores(counts)
        return dict(m, val_av_f1=(scores["artery_f1"] + scores["vein_f1"]) / 2,
                    val_av_accuracy=scores["accuracy_found"] or 0.0)


TASKS = {"vessel": VesselTask(), "av": ArteryVeinTask()}


def training_loss(task, args):
    """The task's loss, and for ``train.py --teacher`` the teachers' term beside it (the labels then
    carry the teachers' maps: losses.DistillationLoss)."""
    loss = task.loss(args)
    return DistillationLoss(loss, args.teacher_weight) if getattr(args, "teacher", None) else loss


def model_arch(args, preprocess):
    """The ``arch`` of the network training builds: the input channels ``preprocess`` gives it, the
    outputs its task has, the size and stages of ``args``."""
    arch = {"in_channels": input_channels(preprocess.get("channel", "gray")), "width": args.width, "depth": args.depth,
            "stages": args.stages}
    outputs = TASKS[preprocess.get("classes", "vessel")].outputs
    if outputs != 1:
        arch["out_channels"] = outputs
    return arch


def _paths(out):
    out = Path(out)
    return out, out.with_name(out.name + ".resume.pth"), out.with_name(out.name + ".log.csv")


def _autocast(device):
    """Mixed precision on CUDA (bf16 where supported, else fp16 + a gradient scaler); fp32 elsewhere."""
    if device.type != "cuda":
        return None, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def _load_resume(resume_path, run_config):
    """The resume state, read by rank 0 and handed to every rank (or the error every rank raises)."""
    state, error = None, None
    if distributed.is_main():
        if not resume_path.is_file():
            error = f"nothing to resume: {resume_path} not found (start without --resume)"
        else:
            try:
                state = torch.load(resume_path, map_location="cpu", weights_only=False)
            except Exception as exc:
                error = f"{resume_path}: unreadable resume state ({type(exc).__name__}); start without --resume"
        if state is not None and state["config"] != run_config:
            diff = {k: (state["config"].get(k), v) for k, v in run_config.items() if state["config"].get(k) != v}
            error = f"--resume with different settings than the interrupted run: {diff}"
    state, error = distributed.broadcast((state, error))
    if error:
        raise UserError(error)
    return state


def _rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(rng):
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


class StopAfterStep:
    """Ctrl-C during training: the first press lets the current step finish, then ``check()``
    raises KeyboardInterrupt from the training loop itself, so the interruption cannot be lost
    inside a library's clean-up code (Python ignores exceptions raised in finalizers); a second
    press stops at once."""

    def __enter__(self):
        self.pressed, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        print("\nCtrl-C: stopping after this step (press again to stop at once)", file=sys.stderr)

    def check(self):
        if self.pressed:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def fit(args, images, labels, val_samples, preprocess, info, look=None, threshold_from=None, init=None):
    """Train a U-Net on uint8 ``images`` (gray HxW, or HxWxC as ``preprocess["channel"]`` says) and
    their ``labels`` (bool; artery/vein class maps for ``preprocess["classes"]`` "av": ``TASKS``);
    returns the best validation metrics (rank 0).

    ``look``: a ``training_data.CameraLook`` that alters and enhances each (not yet enhanced) image.
    ``threshold_from``: with no validation images (a refit), ``(threshold, record)`` the last epoch's
    model takes (``refit_threshold``); else 0.5.
    ``init``: the weights (a state dict) training starts from instead of random ones (fine-tuning;
    ``train.py --init``)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_malloc()
    rank, world_size, _ = distributed.world()
    main = rank == 0
    device = distributed.resolve_device(args.device)
    out, resume_path, log_path = _paths(args.out)
    if main:
        check_output(out, backup=not args.resume)
    distributed.init(device)
    seed_everything(args.seed)
    stages = args.stages
    accumulate = args.accumulate
    task = TASKS[preprocess.get("classes", "vessel")]
    model = build_model(model_arch(args, preprocess))
    if init is not None:
        load_grown(model, init)  # the same network, or a wider one grown from it (train.py --init --width)
    dataset = VesselDataset(images, labels, augmentation(args.augment, args.crop, tuple(args.scale)), look)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1), eta_min=args.lr * 0.01)
    loss_fn = training_loss(task, args)
    log_fields = LOG_FIELDS[:-1] + list(task.log_fields) + LOG_FIELDS[-1:]
    run_config = {k: getattr(args, k) for k in ("dataset", "epochs", "batch_size", "lr", "width", "depth",
                                                "val_count", "val_every", "augment", "seed")}
    for key, default in (("dice_weight", 1.0), ("crop", 0), ("stages", 1), ("accumulate", 1), ("scale", [0.9, 1.1]),
                         ("also", []), ("split_seed", args.seed), ("channel", "gray"), ("fold", 0), ("ema", 0.0),
                         ("cldice_weight", 0.0), ("skeleton_weight", 0.0), ("av", False), ("kind_weight", 1.0),
                         ("init", None), ("teacher", None), ("teacher_weight", 1.0), ("unlabelled", None)):
        if getattr(args, key, default) != default:  # recorded only when changed: older resume states stay valid
            run_config[key] = getattr(args, key)
    if world_size > 1:
        run_config["world_size"] = world_size  # the sample split depends on it
    start, best, rows = 0, None, []
    state = _load_resume(resume_path, run_config) if args.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        scheduler.load_state_dict(state["scheduler"])
        start, best, rows = state["epoch"], state["best"], state["log"]
        _set_rng_state(state["rng"][rank] if "rng" in state else
                       {"torch": state["rng_torch"], "numpy": state["rng_numpy"], "python": state["rng_python"]})
        if main:
            print(f"resuming after epoch {start} of {args.epochs}", file=sys.stderr)
    elif world_size > 1:
        seed_everything(args.seed + rank)  # same initial weights everywhere, different augmentation draws

    amp_dtype, scaler = _autocast(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            net = DistributedDataParallel(torch.nn.SyncBatchNorm.convert_sync_batchnorm(model), device_ids=[device])
            model = net.module
        else:
            net = DistributedDataParallel(model)
    if state is not None:  # after model.to(device): the optimizer state follows the parameters there
        optimizer.load_state_dict(state["optimizer"])
    ema = None
    if args.ema:  # the parameters are averaged; BatchNorm statistics are measured again
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema))
        if state is not None:
            ema.load_state_dict(state["ema"])
    judged = ema.module if ema is not None else model  # what is validated and written

    def settle():
        """Make ``judged`` ready to validate or write: an average's BatchNorm statistics are those of
        the training images through the averaged weights (the trained network's statistics, or an
        average of them, measured worse: docs/experiments.md). Draws no random numbers the training
        would see."""
        if ema is not None:
            rng = _rng_state()
            update_bn(loader, judged, device)  # over this process's share of the samples; then over all
            distributed.average([b for n, b in judged.named_buffers() if n.endswith(("running_mean", "running_var"))])
            _set_rng_state(rng)
        judged.eval()
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                  seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size * accumulate, sampler=sampler,
                                         collate_fn=pad_collate, num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)

    if main:
        where = f"{device}" + (f", {world_size} processes" if world_size > 1 else "")
        print(f"{type(model).__name__} width {args.width} depth {args.depth}: {count_parameters(model):,} parameters; "
              f"{len(dataset)} training samples, {len(val_samples)} validation images; on {where}", file=sys.stderr)
    t_start = time.time()
    saved = start
    try:
        with StopAfterStep() as ctrl_c:
            for epoch in range(start + 1, args.epochs + 1):
                t0 = time.time()
                net.train()
                sampler.set_epoch(epoch)
                total = torch.zeros(2, dtype=torch.float64)
                bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", leave=False, file=sys.stderr,
                           disable=None if main else True)
                for xb, yb in bar:
                    optimizer.zero_grad(set_to_none=True)
                    for k in range(accumulate):  # micro-batch k takes every accumulate-th sample, as ranks do
                        x = xb[k::accumulate].to(device, non_blocking=True)
                        y = yb[k::accumulate].to(device, non_blocking=True)
                        if not len(x):  # a short last batch
                            continue
                        if device.type == "cuda":
                            x = x.contiguous(memory_format=torch.channels_last)
                        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                            outs = net(x, all_stages=True) if stages > 1 else [net(x)]
                        # the loss in fp32; W-Net: on both stages' outputs
                        loss = sum(loss_fn(o.float(), y) for o in outs) / accumulate
                        if scaler is not None:
                            scaler.scale(loss).backward()
                        else:
                            loss.backward()
                        total += torch.tensor([loss.item() * accumulate * len(x), len(x)], dtype=torch.float64)
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    bar.set_postfix(loss=f"{loss.item() * accumulate:.4f}")
                    ctrl_c.check()
                if world_size > 1:
                    import torch.distributed as dist

                    dist.all_reduce(total)  # the epoch's loss over every process's samples
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                row = {"epoch": epoch, "train_loss": round(float(total[0] / max(total[1], 1)), 5), "lr": f"{lr:.3g}"}
                validating = val_samples and (epoch % args.val_every == 0 or epoch == args.epochs)
                if validating:
                    settle()  # on every process (it averages over them)
                if main and validating:
                    m = task.validate(judged, preprocess, val_samples)
                    row.update({k: round(v, 5) for k, v in m.items()})
                    if best is None or m[task.score_key] > best[task.score_key]:
                        best = dict(m, epoch=epoch)
                        model_info = dict(info, **run_config, best_epoch=epoch, val_f1=m["val_f1"], val_auc=m["val_auc"],
                                          **{k: m[k] for k in task.log_fields})
                        save_checkpoint(out, checkpoint_dict(judged, preprocess, m["val_threshold"], model_info))
                row["seconds"] = round(time.time() - t0, 2)
                rows.append(row)
                rngs = distributed.gather(_rng_state())
                if main:
                    save_checkpoint(resume_path, {
                        "config": run_config, "epoch": epoch,
                        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "best": best,
                        "log": rows, "rng": rngs,
                        **({"ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()}} if ema is not None else {}),
                    })
                    write_csv(log_path, rows, log_fields)
                    msg = f"epoch {epoch}: loss {row['train_loss']:.4f}"
                    if "val_f1" in row:
                        msg += f", val F1 {row['val_f1']:.4f} AUC {row['val_auc']:.4f}"
                        if task.score_key != "val_f1":
                            msg += f" {task.score_key} {row[task.score_key]:.4f}"
                        msg += f" (best {best[task.score_key]:.4f} @ {best['epoch']})"
                    print(msg, file=sys.stderr)
                saved = epoch
                ctrl_c.check()
    except KeyboardInterrupt:
        if main:
            if saved:
                print(f"\ninterrupted; epochs 1-{saved} are saved in {resume_path}: continue with the same command "
                      f"plus --resume", file=sys.stderr)
            else:
                print("\ninterrupted before the first epoch ended; nothing to resume", file=sys.stderr)
        raise SystemExit(130)
    if not val_samples:
        settle()  # on every process
    if main:
        if not val_samples:  # no validation images: keep the last model, threshold 0.5 or a reference's
            final = dict(info, **run_config, best_epoch=args.epochs)
            threshold = 0.5
            if threshold_from is not None:
                threshold, final["threshold_from"] = threshold_from
            save_checkpoint(out, checkpoint_dict(judged, preprocess, threshold, final))
            best = {"epoch": args.epochs}
        export_onnx_beside(out)
        kept = (f"best epoch {best['epoch']}: {task.score_key} {best[task.score_key]:.4f}" if val_samples else
                f"kept the last epoch (no validation images), threshold {threshold:.3f}")
        print(f"done in {time.time() - t_start:.0f} s; {kept}; weights in {out}", file=sys.stderr)
    distributed.shutdown()
    return best
