"""The training loop shared by train.py (whole images) and train_patch.py (patches).

One epoch = one pass over the training samples (shuffled, augmented). Every ``val_every`` epochs
the model segments the validation images (held out from the *training* set -- the test set is
never looked at) through the same inference code as prediction; the checkpoint with the best
validation F1 is kept, with the F1-optimal validation threshold stored in it.

Files written next to ``--out`` (all atomically):
  OUT              best weights + architecture + preprocessing + threshold (what inference loads)
  OUT.resume.pth   full state after the last completed epoch (``--resume`` continues from it)
  OUT.log.csv      one row per epoch: loss, validation F1/AUC, threshold, learning rate, time
"""
import csv
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from cli import UserError, add_dataset_args, bounded, warn, writable_dir
from training_data import VesselDataset, augmentation, pad_collate
from imio import atomic_replace
from inference import Segmenter
from losses import CEDiceLoss
from metrics import best_threshold, pooled
from unet import build_model, checkpoint_dict, count_parameters, save_checkpoint, tune_malloc

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
    parser.add_argument("--val-every", type=bounded(int, 1), default=val_every, help="validate every N epochs (default: %(default)s)")
    parser.add_argument("--dice-weight", type=bounded(float, 0), default=1.0,
                        help="weight of the soft-Dice term in the loss (cross-entropy weight 1; default: %(default)s)")
    parser.add_argument("--stages", type=int, choices=[1, 2], default=1,
                        help="1: one U-Net; 2: two in sequence (W-Net), the loss on both (default: %(default)s)")
    parser.add_argument("--crop", type=bounded(int, 0, 4096), default=0,
                        help="train on random CROP x CROP windows instead of whole samples (0: whole; default: %(default)s)")
    parser.add_argument("--augment", choices=["default", "none"], default="default", help="data augmentation (default: %(default)s)")
    parser.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=0, help="random seed: same seed, same result on CPU (default: %(default)s)")
    parser.add_argument("--threads", type=bounded(int, 0, 1024), default=0,
                        help="CPU threads for torch (default: 0 = all cores)")
    parser.add_argument("--out", default=out, help="weights file to write (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.resume.pth")


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


def split_validation(names, count, seed):
    """Deterministically hold out ``count`` of the training image names for validation."""
    names = sorted(names)
    if count >= len(names):
        raise UserError(f"--val-count {count} leaves no training images (the set has {len(names)})")
    rng = np.random.default_rng(seed)
    held = set(rng.choice(names, size=count, replace=False).tolist()) if count > 0 else set()
    return [n for n in names if n not in held], sorted(held)


def validate(model, preprocess, samples):
    """Pooled validation F1 at its best threshold, and AUC-ROC, inside the FOV."""
    seg = Segmenter(model, preprocess)
    pairs = [(s.label, seg.probability(s.image, s.fov), s.fov) for s in samples]
    y, p = pooled(pairs)
    threshold, f1 = best_threshold(y, p)
    return {"val_f1": f1, "val_auc": float(roc_auc_score(y, p)), "val_threshold": threshold}


def _paths(out):
    out = Path(out)
    return out, out.with_name(out.name + ".resume.pth"), out.with_name(out.name + ".log.csv")


def _write_log(path, rows):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    atomic_replace(path, write, suffix=".csv")


def fit(args, images, labels, val_samples, preprocess, info):
    """Train a U-Net on uint8 gray ``images``/bool ``labels``; returns the best validation metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_malloc()
    out, resume_path, log_path = _paths(args.out)
    check_output(out, backup=not args.resume)
    seed_everything(args.seed)
    stages = getattr(args, "stages", 1)
    model = build_model({"in_channels": 1, "width": args.width, "depth": args.depth, "stages": stages})
    dataset = VesselDataset(images, labels, augmentation(args.augment, getattr(args, "crop", 0)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1), eta_min=args.lr * 0.01)
    loss_fn = CEDiceLoss(dice_weight=args.dice_weight)
    run_config = {k: getattr(args, k) for k in ("dataset", "epochs", "batch_size", "lr", "width", "depth",
                                                "val_count", "val_every", "augment", "seed")}
    for key, default in (("dice_weight", 1.0), ("crop", 0), ("stages", 1)):  # recorded only when changed: older resume states stay valid
        if getattr(args, key, default) != default:
            run_config[key] = getattr(args, key)
    start, best, rows = 0, None, []
    if args.resume:
        if not resume_path.is_file():
            raise UserError(f"nothing to resume: {resume_path} not found (start without --resume)")
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise UserError(f"{resume_path}: unreadable resume state ({type(exc).__name__}); start without --resume") from None
        if state["config"] != run_config:
            diff = {k: (state["config"].get(k), v) for k, v in run_config.items() if state["config"].get(k) != v}
            raise UserError(f"--resume with different settings than the interrupted run: {diff}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best, rows = state["epoch"], state["best"], state["log"]
        torch.set_rng_state(state["rng_torch"])
        np.random.set_state(state["rng_numpy"])
        random.setstate(state["rng_python"])
        print(f"resuming after epoch {start} of {args.epochs}", file=sys.stderr)

    print(f"{type(model).__name__} width {args.width} depth {args.depth}: {count_parameters(model):,} parameters; "
          f"{len(dataset)} training samples, {len(val_samples)} validation images", file=sys.stderr)
    t_start = time.time()
    saved = start
    try:
        for epoch in range(start + 1, args.epochs + 1):
            t0 = time.time()
            model.train()
            order = torch.randperm(len(dataset)).tolist()
            total, n = 0.0, 0
            bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch}/{args.epochs}", leave=False,
                       file=sys.stderr, disable=None)
            for i in bar:
                xb, yb = pad_collate([dataset[j] for j in order[i:i + args.batch_size]])
                outs = model.stage_logits(xb) if stages > 1 else [model(xb)]
                loss = sum(loss_fn(o, yb) for o in outs)  # W-Net: the loss on both stages' outputs
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(xb)
                n += len(xb)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            row = {"epoch": epoch, "train_loss": round(total / max(n, 1), 5), "lr": f"{lr:.3g}"}
            if val_samples and (epoch % args.val_every == 0 or epoch == args.epochs):
                model.eval()
                m = validate(model, preprocess, val_samples)
                row.update({k: round(v, 5) for k, v in m.items()})
                if best is None or m["val_f1"] > best["val_f1"]:
                    best = dict(m, epoch=epoch)
                    model_info = dict(info, **run_config, best_epoch=epoch, val_f1=m["val_f1"], val_auc=m["val_auc"])
                    save_checkpoint(out, checkpoint_dict(model, preprocess, m["val_threshold"], model_info))
            row["seconds"] = round(time.time() - t0, 2)
            rows.append(row)
            save_checkpoint(resume_path, {
                "config": run_config, "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best": best, "log": rows,
                "rng_torch": torch.get_rng_state(), "rng_numpy": np.random.get_state(), "rng_python": random.getstate(),
            })
            saved = epoch
            _write_log(log_path, rows)
            msg = f"epoch {epoch}: loss {row['train_loss']:.4f}"
            if "val_f1" in row:
                msg += f", val F1 {row['val_f1']:.4f} AUC {row['val_auc']:.4f} (best {best['val_f1']:.4f} @ {best['epoch']})"
            print(msg, file=sys.stderr)
    except KeyboardInterrupt:
        if saved:
            print(f"\ninterrupted; epochs 1-{saved} are saved in {resume_path}: continue with the same command "
                  f"plus --resume", file=sys.stderr)
        else:
            print("\ninterrupted before the first epoch ended; nothing to resume", file=sys.stderr)
        raise SystemExit(130)
    if not val_samples:  # no validation images: keep the last model with threshold 0.5
        save_checkpoint(out, checkpoint_dict(model, preprocess, 0.5, dict(info, **run_config, best_epoch=args.epochs)))
        best = {"epoch": args.epochs}
    export_onnx_beside(out)
    print(f"done in {time.time() - t_start:.0f} s; best epoch {best.get('epoch')}: "
          f"val F1 {best.get('val_f1', float('nan')):.4f}; weights in {out}", file=sys.stderr)
    return best
