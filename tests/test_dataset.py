import numpy as np
import pytest

from cli import UserError
from dataset import load_sample, make_patches, pair_files, read_patch_manifest
from training_data import VesselDataset, augmentation
from imio import read_image, write_png
from conftest import disc_image


def test_pairs_by_name_and_fails_on_unpaired(tiny_dataset):
    pairs = pair_files(tiny_dataset / "DRIVE" / "train")
    assert [p[0].name for p in pairs] == ["01_training.png", "02_training.png", "03_training.png"]
    assert all(p[0].name == p[1].name == p[2].name for p in pairs)
    (tiny_dataset / "DRIVE" / "train" / "label" / "02_training.png").unlink()
    with pytest.raises(UserError, match="02_training.png has no label"):
        pair_files(tiny_dataset / "DRIVE" / "train")


def test_label_without_image_and_empty_folder(tmp_path):
    write_png(tmp_path / "d" / "label" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "d" / "image").mkdir()
    with pytest.raises(UserError, match="no images"):
        pair_files(tmp_path / "d")
    write_png(tmp_path / "d" / "image" / "y.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "d" / "label" / "y.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="x.png has no image"):
        pair_files(tmp_path / "d")


def test_label_of_another_size_is_refused(tmp_path):
    img, lab, _ = disc_image()
    write_png(tmp_path / "i.png", img)
    write_png(tmp_path / "l.png", lab[:-2])
    with pytest.raises(UserError, match="same size"):
        load_sample(tmp_path / "i.png", tmp_path / "l.png")


def test_patches_count_naming_binary_labels_and_no_stale_files(tiny_dataset):
    n = make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=5, seed=3)
    out = tiny_dataset / "DRIVE_patch" / "train"
    assert n == 15
    names = sorted(p.name for p in (out / "image").iterdir())
    assert names == sorted(f"{k}_training.png" for k in range(1, 16))
    assert names == sorted(p.name for p in (out / "label").iterdir())
    for name in names:
        im, lab = read_image(out / "image" / name), read_image(out / "label" / name)
        assert im.shape == (32, 32) and im.ndim == 2
        assert set(np.unique(lab)) <= {0, 255}
    manifest = read_patch_manifest(out)
    assert manifest["1_training.png"]["source"] == "01_training"
    assert manifest["15_training.png"]["source"] == "03_training"
    # a smaller second run leaves no stale patches
    make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=2, seed=3)
    assert len(list((out / "image").iterdir())) == 6 and len(list((out / "label").iterdir())) == 6
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_patch_positions_match_the_resized_image(tiny_dataset):
    from preprocess import resize, to_gray

    make_patches(tiny_dataset, "DRIVE", "test", size=80, patch=40, count=3, seed=0)
    out = tiny_dataset / "DRIVE_patch" / "test"
    row = read_patch_manifest(out)["2_testing.png"]
    src = read_image(tiny_dataset / "DRIVE" / "test" / "image" / "01_testing.png")
    big = resize(to_gray(src), (80, 80))
    x, y = int(row["x"]), int(row["y"])
    assert np.array_equal(read_image(out / "image" / "2_testing.png"), big[y:y + 40, x:x + 40])


def test_same_seed_same_patches(tiny_dataset, tmp_path):
    make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=4, seed=7, out_root=tmp_path / "a")
    make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=4, seed=7, out_root=tmp_path / "b")
    make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=4, seed=8, out_root=tmp_path / "c")
    a, b, c = (read_patch_manifest(tmp_path / d / "train") for d in "abc")
    assert a == b and a != c


def test_patch_larger_than_image_is_a_user_error(tiny_dataset):
    with pytest.raises(UserError, match="larger than the resized image"):
        make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=128)


def test_augmentation_moves_image_and_label_together():
    img, lab, _ = disc_image(64, 64, 28, colour=False)
    ds = VesselDataset([img], [lab], augmentation())
    import torch

    torch.manual_seed(0)
    for _ in range(5):
        x, y = ds[0]
        assert x.shape == y.shape == (1, 64, 64)
        assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
        # vessels were drawn dark (60 on 150): after any flip/rotation they must stay dark
        if y.sum() > 0:
            assert x[y > 0].mean() < x[(y == 0) & (x > 0.3)].mean()
