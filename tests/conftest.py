import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# One setting locates the public datasets: RETINA_DATA (default: ../shared/data beside the repo).
DATA = Path(os.environ.get("RETINA_DATA", REPO.parent / "shared" / "data"))
# CI sets RETINA_REQUIRE_DATA=1 so missing data fails instead of silently skipping.
REQUIRE = os.environ.get("RETINA_REQUIRE_DATA") == "1"


def need(path):
    path = DATA / path
    if not path.exists():
        if REQUIRE:
            pytest.fail(f"dataset {path} missing but RETINA_REQUIRE_DATA=1")
        pytest.skip(f"real data not found at {path} (set RETINA_DATA to the folder holding DRIVE/ and STARE/)")
    return path


@pytest.fixture
def drive_src():
    return need("DRIVE")


@pytest.fixture
def stare_src():
    return need("STARE")


def disc_image(h=120, w=140, radius=50, seed=0, colour=True):
    """Synthetic fundus: a bright noisy disc with dark 'vessel' lines on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= radius ** 2
    img = np.where(fov, 150 + rng.integers(-20, 20, (h, w)), 3).astype(np.uint8)
    label = np.zeros((h, w), bool)
    label[h // 2 - 1:h // 2 + 2, :] = True
    label[:, w // 3:w // 3 + 2] = True
    label &= fov
    img[label] = 60
    if colour:
        img = np.dstack([img, (img * 0.6).astype(np.uint8), (img * 0.3).astype(np.uint8)])
    return img, label, fov


def av_photo(h=96, w=112, seed=0):
    """(colour photograph, artery/vein label, FOV): artery row, vein column, an uncertain crossing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 2 - 2) ** 2
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[fov] = (200, 110, 50)
    rgb = np.clip(rgb.astype(int) + rng.integers(-8, 8, rgb.shape) * fov[..., None], 0, 255).astype(np.uint8)
    label = np.zeros((h, w), np.uint8)
    label[h // 2 - 2:h // 2 + 2, :] = 1
    label[:, w // 3:w // 3 + 4] = 2
    label[h // 2 - 2:h // 2 + 2, w // 3:w // 3 + 4] = 3
    label[~fov] = 0
    rgb[label == 1] = (170, 60, 30)
    rgb[label == 2] = (90, 20, 15)
    rgb[label == 3] = (120, 40, 20)
    return rgb, label, fov


def write_av_set(root, splits):
    """ROOT/DRIVE-AV/SPLIT/{image,label,label_av,mask}: ``splits`` {split: (file tag, count)} of av_photo
    photographs (the layout prepare_data.py --dataset DRIVE-AV writes)."""
    from imio import write_png

    for split, (tag, n) in splits.items():
        for i in range(1, n + 1):
            rgb, classes, fov = av_photo(seed=i)
            for sub, arr in (("image", rgb), ("label", classes > 0), ("label_av", classes), ("mask", fov)):
                write_png(root / "DRIVE-AV" / split / sub / f"{i:02d}_{tag}.png", arr)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """ROOT/DRIVE/{train,test}/{image,label,mask} with 3 + 2 synthetic images."""
    from imio import write_png

    root = tmp_path / "root"
    for split, tag, n in (("train", "training", 3), ("test", "testing", 2)):
        for i in range(1, n + 1):
            img, lab, fov = disc_image(seed=i)
            d = root / "DRIVE" / split
            write_png(d / "image" / f"{i:02d}_{tag}.png", img)
            write_png(d / "label" / f"{i:02d}_{tag}.png", lab)
            write_png(d / "mask" / f"{i:02d}_{tag}.png", fov)
    return root
