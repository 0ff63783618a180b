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
