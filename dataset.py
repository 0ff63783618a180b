"""Dataset layout, image/label pairing and patch cutting (no torch: inference and evaluation use it too).

Layout written by ``prepare_data.py`` and read by every stage::

    DRIVE/{train,test}/{image,label,mask}/NN_training.png | NN_testing.png
    DRIVE_patch/{train,test}/{image,label}/K_training.png | K_testing.png  (+ patches.csv)
"""
import csv
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cli import UserError
from imio import list_images, read_image, read_mask, replace_dir, stem, write_png
from preprocess import estimate_fov, resize, to_gray

SPLITS = {"train": "training", "test": "testing"}
DATASETS = ("DRIVE", "STARE")


def split_dir(root, dataset, split):
    return Path(root) / dataset / split


@dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 HxW or HxWx3
    label: np.ndarray  # bool HxW
    fov: np.ndarray  # bool HxW
    classes: np.ndarray = None  # uint8 HxW artery/vein classes (av.py) where the dataset has label_av/


def pair_files(folder, require_mask=False):
    """Pair ``image/X`` with ``label/X`` (and ``mask/X``) by file name stem.

    Returns a list of (image, label, mask-or-None) paths. Fails with a clear message on an image
    without a label or a label without an image, and on an empty folder.
    """
    folder = Path(folder)
    images = {stem(p): p for p in list_images(folder / "image")}
    labels = {stem(p): p for p in list_images(folder / "label", "labels")}
    masks = {stem(p): p for p in list_images(folder / "mask", "FOV masks")} if (folder / "mask").is_dir() else {}
    if not images:
        raise UserError(f"no images in {folder / 'image'}: prepare the data first (python prepare_data.py --help)")
    for name in sorted(images):
        if name not in labels:
            raise UserError(f"{images[name]} has no label: expected {folder / 'label' / (name + '.png')}")
        if require_mask and name not in masks:
            raise UserError(f"{images[name]} has no FOV mask in {folder / 'mask'}")
    for name in sorted(labels):
        if name not in images:
            raise UserError(f"{labels[name]} has no image: expected {folder / 'image' / (name + '.png')}")
    return [(images[n], labels[n], masks.get(n)) for n in sorted(images)]


def load_sample(image_path, label_path, mask_path=None):
    """Read one image with its binary label and FOV (the mask file, else estimated from the image)."""
    image = read_image(image_path)
    label = read_mask(label_path)
    if label.shape != image.shape[:2]:
        raise UserError(f"{label_path} is {label.shape[1]}x{label.shape[0]} but its image {image_path} is "
                        f"{image.shape[1]}x{image.shape[0]}: label and image must have the same size")
    if mask_path is not None:
        fov = read_mask(mask_path)
        if fov.shape != image.shape[:2]:
            raise UserError(f"{mask_path} does not have the size of its image {image_path}")
    else:
        fov = estimate_fov(image)
    return Sample(stem(image_path), image, label, fov)


def load_split(root, dataset, split, av=False):
    """All samples of ``ROOT/DATASET/SPLIT``; with ``av``, each with its artery/vein classes from
    ``label_av/`` (prepare_data.py writes them for DRIVE-AV and LES-AV)."""
    folder = split_dir(root, dataset, split)
    samples = [load_sample(*paths) for paths in pair_files(folder)]
    if av:
        for s in samples:
            s.classes = read_av_label(folder / "label_av" / f"{s.name}.png", s.label.shape)
    return samples


def read_av_label(path, shape=None, colour=False,
                  missing="artery/vein labels come from prepare_data.py --dataset DRIVE-AV or LES-AV"):
    """An artery/vein label (av.py's values; with ``colour`` also predict.py --av's colour map) of an
    image of ``shape`` (if given), or one UserError line (``missing`` says where such files come from)."""
    from av import AVLabelError, check_av_label, read_classes

    if not Path(path).is_file():
        raise UserError(f"{path} not found: {missing}")
    try:
        classes = (read_classes if colour else check_av_label)(read_image(path), str(path))
    except AVLabelError as exc:
        raise UserError(str(exc)) from None
    if shape is not None and classes.shape != tuple(shape):
        raise UserError(f"{path} is {classes.shape[1]}x{classes.shape[0]}, its image {shape[1]}x{shape[0]}")
    return classes


# --------------------------------------------------------------------------- patches

def make_patches(root, dataset, split, size=512, patch=256, count=50, seed=0, out_root=None):
    """Cut ``count`` random ``patch``x``patch`` windows from each image resized to ``size``x``size``.

    Writes ``DATASET_patch/SPLIT/{image,label}/K_{training|testing}.png`` numbered 1, 2, ... in
    image order, plus ``patches.csv`` (patch, source image, x, y, sizes). The whole folder is built aside
    and swapped in at the end, so a re-run replaces the previous set with no stale patches and an
    interruption leaves the previous set intact. Returns the number of patches written.
    """
    if patch > size:
        raise UserError(f"patch size {patch} is larger than the resized image ({size}x{size}); "
                        f"use --patch-size <= {size}")
    if count < 1:
        raise UserError("the number of patches per image must be at least 1")
    pairs = pair_files(split_dir(root, dataset, split))
    out_root = Path(out_root) if out_root else Path(root) / f"{dataset}_patch"
    final = out_root / split
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{split}.new-"))
    rng = np.random.default_rng(seed)
    suffix = SPLITS[split]
    rows, k = [], 0
    try:
        for image_path, label_path, _ in pairs:
            s = load_sample(image_path, label_path)
            image = resize(to_gray(s.image), (size, size))
            label = resize(s.label, (size, size))
            for _ in range(count):
                y, x = (int(v) for v in rng.integers(0, size - patch + 1, size=2))
                k += 1
                name = f"{k}_{suffix}.png"
                write_png(tmp / "image" / name, image[y:y + patch, x:x + patch])
                write_png(tmp / "label" / name, label[y:y + patch, x:x + patch])
                rows.append((name, s.name, x, y, size, patch))
        with open(tmp / "patches.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["patch", "source", "x", "y", "size", "patch_size"])
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        replace_dir(tmp, final)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return k


def read_patch_manifest(folder):
    """``{patch file name: row}`` from ``patches.csv`` (empty when absent); a row has the source
    image name, the window position x, y and the resized image / patch sizes."""
    path = Path(folder) / "patches.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["patch"]: row for row in csv.DictReader(f)}


def check_colour(samples, where, needs):
    """Refuse gray images where ``needs`` (a model or option that uses the green channel) needs the
    colour photographs (RGB2gray.py converts them in place)."""
    gray = [s.name for s in samples if s.image.ndim == 2]
    if gray:
        raise UserError(f"{where}: {gray[0]} is a gray image, but {needs} needs the colour photographs "
                        f"(RGB2gray.py converts them in place; run prepare_data.py again for the colour ones)")
