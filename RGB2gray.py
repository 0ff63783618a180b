"""Convert the images of DATASET/{train,test}/image to grayscale, in place.

    python RGB2gray.py                   # DRIVE
    python RGB2gray.py --dataset STARE

Each file is replaced atomically; gray images are left untouched, so running it twice is safe.
"""
import argparse

from tqdm import tqdm

from cli import add_dataset_args, run_main
from dataset import split_dir
from imio import list_images, read_image, write_png
from preprocess import to_gray


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    args = p.parse_args(argv)
    converted = kept = 0
    for split in ("train", "test"):
        for path in tqdm(list_images(split_dir(args.root, args.dataset, split) / "image"), desc=split, disable=None):
            image = read_image(path)
            if image.ndim == 2 and path.suffix.lower() == ".png":
                kept += 1
                continue
            write_png(path.with_suffix(".png"), to_gray(image))
            if path.suffix.lower() != ".png":
                path.unlink()
            converted += 1
    print(f"{args.dataset}: {converted} images converted to grayscale, {kept} already gray")


if __name__ == "__main__":
    main()
