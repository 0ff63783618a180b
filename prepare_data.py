"""Convert an official DRIVE or STARE release (or FIVES photographs, the optic disc references, or an
artery/vein release) into this toolkit's folder layout.

    python prepare_data.py --dataset DRIVE --source ../shared/data/DRIVE
    python prepare_data.py --dataset STARE --source ../shared/data/STARE
    python prepare_data.py --dataset FIVES --source ../shared/data/FIVES-mini
    python prepare_data.py --dataset DISC --source ../shared/data/DISC     # labels: the optic disc
    python prepare_data.py --dataset LES-AV --source ../shared/data/AV/LES-AV      # 1620x1444, every vessel
    python prepare_data.py --dataset DRIVE-AV --source ../shared/data/AV/DRIVE_AV  # DRIVE with RITE's A/V labels

writes DATASET/{train,test}/{image,label,mask}/NN_training.png | NN_testing.png (colour images,
binary 0/255 labels and FOV masks) and, for the test split, label2/ with the second observer.
DRIVE: training/ 21..40 -> 01..20_training, test/ 01..20 -> 01..20_testing; official masks.
STARE: the 20 labelled images in name order; the first 10 (im0001 im0002 im0003 im0004 im0005
im0044 im0077 im0081 im0082 im0139) train, the last 10 (im0162 im0163 im0235 im0236 im0239
im0240 im0255 im0291 im0319 im0324) test; labels-ah is the label, labels-vk the second
observer; STARE has no FOV masks, so they are estimated from the images.
FIVES (2048x2048 photographs, for measuring high-resolution behaviour): a folder of image/ and
label/ with the same file names, or the official train/ and test/ with Original/ and
"Ground truth/"; everything under image/ goes to the test split; FOVs are estimated.
DISC (the optic disc as the label, for train.py --dataset DISC): DRIONS-DB image_001-060 train,
061-110 test (its expert outlines, JPEG: thresholded at 128), and the 40 DRIVE photographs with
the disc circles of DRIVE_disc.csv (DRIVE's split, its FOV masks; DRIVE/ beside DISC/).
LES-AV (1620x1444, Orlando et al. 2018) and DRIVE-AV (the 40 DRIVE photographs with the RITE
artery/vein labels, Hu et al. 2013): {training,test}/{images,1st_manual,mask} -> train, test, names
kept; the artery/vein labels (0 background, 1 artery, 2 vein, 3 uncertain; av.py) become vessel
labels (> 0) in label/ and are kept as they are in label_av/; the official FOV masks
(NAME_mask.gif).
DATASET/sources.csv maps every written name back to its original file.
"""
import argparse
import csv
import re
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from cli import UserError, run_main, writable_dir
from imio import is_image_file, read_image, read_mask, replace_dir, write_png
from preprocess import estimate_fov


def drive_items(src):
    """(split, new name, image, label, mask, second-observer label or None) for DRIVE."""
    items = []
    for split, sub, tag in (("train", "training", "training"), ("test", "test", "testing")):
        images = sorted((src / sub / "images").glob("*.tif"))
        if not images:
            raise UserError(f"no .tif images in {src / sub / 'images'}: --source must be the DRIVE folder "
                            f"holding training/ and test/")
        for i, img in enumerate(images, 1):
            num = re.match(r"\d+", img.name).group(0)
            label = src / sub / "1st_manual" / f"{num}_manual1.gif"
            mask = src / sub / "mask" / f"{num}_{sub}_mask.gif"
            second = src / sub / "2nd_manual" / f"{num}_manual2.gif"
            items.append((split, f"{i:02d}_{tag}", img, label, mask, second if second.is_file() else None))
    return items


def stare_items(src):
    images = sorted((src / "stare-images").glob("im*.ppm*"))
    labelled = [p for p in images if (src / "labels-ah" / p.name.replace(".ppm", ".ah.ppm")).is_file()]
    if len(labelled) < 2:
        raise UserError(f"no labelled STARE images in {src}: --source must hold stare-images/ and labels-ah/")
    half = len(labelled) // 2
    items = []
    for k, img in enumerate(labelled):
        split, tag, i = ("train", "training", k + 1) if k < half else ("test", "testing", k - half + 1)
        label = src / "labels-ah" / img.name.replace(".ppm", ".ah.ppm")
        second = src / "labels-vk" / img.name.replace(".ppm", ".vk.ppm")
        items.append((split, f"{i:02d}_{tag}", img, label, None, second if split == "test" and second.is_file() else None))
    return items


def fives_items(src):
    """FIVES: image/ + label/ (all test), or the official {train,test}/{Original,Ground truth}/."""
    layouts = [("test", src / "image", src / "label")] if (src / "image").is_dir() else [
        (split, src / sub / "Original", src / sub / "Ground truth") for split, sub in (("train", "train"), ("test", "test"))]
    items = []
    for split, image_dir, label_dir in layouts:
        images = sorted(p for p in image_dir.glob("*") if is_image_file(p))
        if not images:
            raise UserError(f"no images in {image_dir}: --source must hold image/ and label/ "
                            f"(or the official train/ and test/ folders)")
        for img in images:
            label = label_dir / img.name
            if not label.is_file():
                raise UserError(f"{img} has no label: expected {label}")
            items.append((split, img.stem, img, label, None, None))
    return items


def disc_items(src):
    """DISC (the optic disc, for train.py --dataset DISC): DRIONS-DB's expert outlines (image_001-060
    train, 061-110 test) and DRIVE's disc circles from DRIVE_disc.csv (DRIVE's own split; the DRIVE
    release beside the DISC folder). The label is the disc region; a circle is given as (x, y, r)."""
    drive, drions = src.parent / "DRIVE", src / "DRIONS-DB"
    if not (src / "DRIVE_disc.csv").is_file() or not (drions / "image").is_dir():
        raise UserError(f"--source {src} must hold DRIVE_disc.csv and DRIONS-DB/ (with DRIVE/ beside it)")
    items = []
    with open(src / "DRIVE_disc.csv", newline="") as f:
        for r in csv.DictReader(f):
            sub, tag = ("training", "training") if r["split"] == "training" else ("test", "test")
            num = re.match(r"\d+", r["image"]).group(0)
            items.append(("train" if sub == "training" else "test", f"drive_{num}", drive / sub / "images" / r["image"],
                          (float(r["centre_x"]), float(r["centre_y"]), float(r["radius"])),
                          drive / sub / "mask" / f"{num}_{tag}_mask.gif", None))
    for img in sorted((drions / "image").glob("image_*.jpg")):
        number = int(img.stem.split("_")[1])
        items.append(("train" if number <= 60 else "test", f"drions_{number:03d}", img, drions / "label" / img.name,
                      None, None))
    return items


def av_items(src):
    """An artery/vein release (LES-AV, DRIVE_AV): {training,test}/{images,1st_manual,mask}; the label
    of images/NAME.ext is 1st_manual/NAME.png, its FOV mask/NAME_mask.gif."""
    items = []
    for split, sub in (("train", "training"), ("test", "test")):
        folder = src / sub / "images"
        images = [p for p in sorted(folder.glob("*")) if is_image_file(p)] if folder.is_dir() else []
        if not images:
            raise UserError(f"no images in {folder}: --source must be the artery/vein release folder "
                            f"holding training/ and test/ (each with images/, 1st_manual/, mask/)")
        for img in images:
            items.append((split, img.stem, img, src / sub / "1st_manual" / f"{img.stem}.png",
                          src / sub / "mask" / f"{img.stem}_mask.gif", None))
    return items


def read_av(label):
    """An artery/vein label file as class indices (av.py's values); any other value is refused in one
    line (not an A/V label file of this layout)."""
    from dataset import read_av_label

    return read_av_label(label)


def read_av_vessels(label):
    """An artery/vein label as a vessel label: every labelled pixel, uncertain ones too."""
    return read_av(label) > 0


def read_label(label, shape):
    """A label file (any non-zero pixel is foreground; in a JPEG, whose edges are noisy, any pixel from
    half-way up), or a disc given as (x, y, radius) drawn at ``shape``."""
    if isinstance(label, tuple):
        import numpy as np

        yy, xx = np.ogrid[:shape[0], :shape[1]]
        x, y, r = label
        return (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    if label.suffix.lower() not in (".jpg", ".jpeg"):
        return read_mask(label)
    arr = read_image(label)
    return (arr.max(axis=2) if arr.ndim == 3 else arr) >= 128


READERS = {"DRIVE": drive_items, "STARE": stare_items, "FIVES": fives_items, "DISC": disc_items, "LES-AV": av_items,
           "DRIVE-AV": av_items}
AV_SOURCES = {"LES-AV": "AV/LES-AV", "DRIVE-AV": "AV/DRIVE_AV"}  # artery/vein releases, under ../shared/data


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(READERS), default="DRIVE", help="which release (default: %(default)s)")
    p.add_argument("--source", default=None, help="the official release folder (default: ../shared/data/DATASET)")
    p.add_argument("--root", default=".", help="where DATASET/ is written (default: current folder)")
    args = p.parse_args(argv)
    src = Path(args.source or Path("../shared/data") / AV_SOURCES.get(args.dataset, args.dataset))
    if not src.is_dir():
        raise UserError(f"source folder {src} not found: download the official {args.dataset} release and pass --source")
    items = READERS[args.dataset](src)
    root = writable_dir(args.root, "--root folder")
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{args.dataset}.new-"))
    try:
        rows = []
        for split, name, img, label, mask, second in tqdm(items, desc=f"preparing {args.dataset}", disable=None):
            image = read_image(img)
            classes = read_av(label) if args.dataset in AV_SOURCES else None
            lab = classes > 0 if classes is not None else read_label(label, image.shape[:2])
            fov = read_mask(mask) if mask is not None else estimate_fov(image)
            if lab.shape != image.shape[:2] or fov.shape != image.shape[:2]:
                raise UserError(f"{label} or its mask does not have the size of {img}")
            out = tmp / split
            write_png(out / "image" / f"{name}.png", image)
            write_png(out / "label" / f"{name}.png", lab)
            if classes is not None:
                write_png(out / "label_av" / f"{name}.png", classes)
            write_png(out / "mask" / f"{name}.png", fov)
            if second is not None:
                write_png(out / "label2" / f"{name}.png", read_mask(second))
            rows.append((split, name, img.name, label.name if isinstance(label, Path) else "circle %g %g %g" % label,
                         mask.name if mask else "estimated", second.name if second else ""))
        with open(tmp / "sources.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["split", "name", "image", "label", "mask", "second_observer"])
            w.writerows(rows)
        replace_dir(tmp, root / args.dataset)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_train = sum(r[0] == "train" for r in rows)
    print(f"wrote {root / args.dataset}: {n_train} training and {len(rows) - n_train} test images")


if __name__ == "__main__":
    main()
