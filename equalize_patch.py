"""Histogram-equalize every patch image of DATASET_patch/{train,test}/image, in place.

    python equalize_patch.py

Each file is replaced atomically and tagged as equalized inside the PNG, so a second run (or a
run after an interruption) skips what is already done instead of equalizing twice.
"""
import argparse
from pathlib import Path

from tqdm import tqdm

from cli import UserError, add_dataset_args, run_main, warn
from imio import list_images, png_text, read_image, write_png
from preprocess import equalize, to_gray


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    args = p.parse_args(argv)
    done = skipped = 0
    for split in ("train", "test"):
        folder = Path(args.root) / f"{args.dataset}_patch" / split / "image"
        if not folder.is_dir():
            warn(f"{folder} not found, skipped (run split_{'training' if split == 'train' else 'testing'}_set.py)")
            continue
        for path in tqdm(list_images(folder), desc=split, disable=None):
            if png_text(path).get("equalized") == "1":
                skipped += 1
                continue
            write_png(path, equalize(to_gray(read_image(path))), text={"equalized": "1"})
            done += 1
    if done == 0 and skipped == 0:
        raise UserError(f"no patches found under {Path(args.root) / (args.dataset + '_patch')}: run split_training_set.py first")
    msg = f"equalized {done} patches"
    if skipped:
        msg += f"; {skipped} were already equalized and left as they are"
    print(msg)


if __name__ == "__main__":
    main()
