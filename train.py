"""Train the U-Net on whole images of DATASET/train (gray + CLAHE, native resolution).

    python train.py                      # DRIVE, writes UNet.pth
    python train.py --dataset STARE --out UNet_STARE.pth
    torchrun --standalone --nproc_per_node=2 train.py      # data-parallel (GPUs or CPU processes)

A validation subset of the training images (--val-count) selects the checkpoint and threshold.
"""
import argparse

import numpy as np

from cli import bounded, run_main
from dataset import load_split
from preprocess import ENHANCERS, enhance, fov_diameter, to_gray
from trainer import add_training_args, fit, parse_training_args, split_validation


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, epochs=400, batch_size=2, lr=5e-3, val_every=5, out="UNet.pth")
    p.add_argument("--enhance", choices=ENHANCERS, default="clahe",
                   help="contrast enhancement of each whole image (default: %(default)s)")
    p.add_argument("--detail", type=bounded(float, 1, 4), default=1.0,
                   help="stored in the weights: inference segments a photograph larger than the training scale at "
                        "up to DETAIL times it (for a model trained with a wide --scale; default: %(default)s)")
    return p


@run_main
def main(argv=None):
    args = parse_training_args(build_parser(), argv)
    samples = load_split(args.root, args.dataset, "train")
    train_names, val_names = split_validation([s.name for s in samples], args.val_count, args.seed)
    train = [s for s in samples if s.name in train_names]
    val = [s for s in samples if s.name in val_names]
    preprocess = {
        "method": "whole",
        "enhance": args.enhance,
        "fov_diameter": round(float(np.median([fov_diameter(s.fov) for s in samples])), 1),
    }
    if args.detail != 1.0:
        preprocess["detail"] = args.detail
    images = [enhance(to_gray(s.image), args.enhance) for s in train]
    info = {"trained_on": args.dataset, "train_images": train_names, "val_images": val_names}
    fit(args, images, [s.label for s in train], val, preprocess, info)


if __name__ == "__main__":
    main()
