"""Train the U-Net on the patches of DATASET_patch/train (the original local-enhancement method).

    python train_patch.py                # DRIVE, writes UNet_patch_equalized_patch_256_50.pth

Patches come from split_training_set.py (and equalize_patch.py). The patches of --val-count
source images are held out; those images are segmented whole, through the patch method, to pick
the checkpoint and threshold. The test set is never used.
"""
import argparse
from collections import Counter
from pathlib import Path

from cli import UserError, run_main, warn
from dataset import load_sample, pair_files, read_patch_manifest, split_dir
from imio import png_text, read_image, read_mask, stem
from trainer import add_training_args, fit, parse_training_args, split_validation


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, epochs=4, batch_size=8, lr=5e-3, val_every=1, out=None)
    return p


@run_main
def main(argv=None):
    parser = build_parser()
    args = parse_training_args(parser, argv)
    if args.augment == "camera":  # the patches are equalized on disk already: nothing to alter before that
        parser.error("argument --augment: camera works with train.py only (the patches are equalized on disk)")
    folder = Path(args.root) / f"{args.dataset}_patch" / "train"
    pairs = pair_files(folder)
    manifest = read_patch_manifest(folder)
    if not manifest:
        raise UserError(f"{folder / 'patches.csv'} not found: run split_training_set.py to cut the patches")
    missing = [p.name for p, _, _ in pairs if p.name not in manifest]
    if missing:
        raise UserError(f"{folder / 'image' / missing[0]} is not listed in patches.csv: re-run split_training_set.py")
    sources = {name: row["source"] for name, row in manifest.items()}
    train_names, val_names = split_validation(set(sources.values()), args.val_count, args.split_seed, args.fold)
    equalized = all(png_text(p).get("equalized") == "1" for p, _, _ in pairs)
    if not equalized:
        warn(f"patches in {folder / 'image'} are not (all) histogram-equalized: run equalize_patch.py first; "
             "training without equalization")
    first = next(iter(manifest.values()))
    size, patch = int(first["size"]), int(first["patch_size"])
    per_image = Counter(sources.values()).most_common(1)[0][1]
    if args.out is None:
        args.out = f"UNet_patch{'_equalized' if equalized else ''}_patch_{patch}_{per_image}.pth"
    images, labels = [], []
    for image_path, label_path, _ in pairs:
        if sources[image_path.name] in train_names:
            images.append(read_image(image_path))
            labels.append(read_mask(label_path))
    if any(im.ndim != 2 for im in images):
        raise UserError(f"patches in {folder / 'image'} must be grayscale: re-run split_training_set.py")
    full = {stem(p): (p, l, m) for p, l, m in pair_files(split_dir(args.root, args.dataset, "train"))}
    val = [load_sample(*full[name]) for name in val_names if name in full]
    preprocess = {"method": "patch", "size": size, "patch": patch, "enhance": "equalize" if equalized else "none"}
    info = {"trained_on": f"{args.dataset}_patch", "train_images": train_names, "val_images": val_names,
            "patches_per_image": per_image}
    fit(args, images, labels, val, preprocess, info)


if __name__ == "__main__":
    main()
