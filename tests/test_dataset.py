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
    folder = tiny_dataset / "DRIVE" / "train"
    with pytest.raises(UserError, match=f"02_training.png has no label: expected {folder / 'label' / '02_training.png'}$"):
        pair_files(folder)


def test_label_without_image_and_empty_folder(tmp_path):
    write_png(tmp_path / "d" / "label" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "d" / "image").mkdir()
    with pytest.raises(UserError, match=f"no images in {tmp_path / 'd' / 'image'}: prepare the data first"):
        pair_files(tmp_path / "d")
    write_png(tmp_path / "d" / "image" / "y.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "d" / "label" / "y.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match=f"x.png has no image: expected {tmp_path / 'd' / 'image' / 'x.png'}$"):
        pair_files(tmp_path / "d")
    import shutil

    shutil.rmtree(tmp_path / "d" / "label")
    with pytest.raises(UserError, match=r"\(labels expected there\)"):
        pair_files(tmp_path / "d")


def test_label_of_another_size_is_refused(tmp_path):
    img, lab, _ = disc_image()
    write_png(tmp_path / "i.png", img)
    write_png(tmp_path / "l.png", lab[:-2])
    with pytest.raises(UserError, match=r"l.png is 140x118 but its image .*i.png is 140x120: label and image must"):
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
    for name, row in read_patch_manifest(out).items():  # every patch is its window of the resized image
        src = read_image(tiny_dataset / "DRIVE" / "test" / "image" / f"{row['source']}.png")
        lab = read_image(tiny_dataset / "DRIVE" / "test" / "label" / f"{row['source']}.png") > 0
        x, y = int(row["x"]), int(row["y"])
        assert np.array_equal(read_image(out / "image" / name), resize(to_gray(src), (80, 80))[y:y + 40, x:x + 40])
        assert np.array_equal(read_image(out / "label" / name) > 0, resize(lab, (80, 80), label=True)[y:y + 40, x:x + 40])


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


def test_patch_manifest_columns_and_positions_span_the_whole_image(tiny_dataset):
    make_patches(tiny_dataset, "DRIVE", "train", size=40, patch=32, count=60, seed=1)
    rows = list(read_patch_manifest(tiny_dataset / "DRIVE_patch" / "train").values())
    assert len(rows) == 180
    assert set(rows[0]) == {"patch", "source", "x", "y", "size", "patch_size"}
    assert {r["size"] for r in rows} == {"40"} and {r["patch_size"] for r in rows} == {"32"}
    xs, ys = [int(r["x"]) for r in rows], [int(r["y"]) for r in rows]
    assert min(xs) == min(ys) == 0 and max(xs) == max(ys) == 8  # every position 0..size-patch can occur
    assert read_patch_manifest(tiny_dataset / "nowhere") == {}


def test_interrupted_patch_run_keeps_the_previous_set(tiny_dataset, monkeypatch):
    import dataset

    make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=2, seed=0)
    out = tiny_dataset / "DRIVE_patch" / "train"
    before = sorted(p.name for p in (out / "image").iterdir())
    calls = []

    def failing(path, arr, text=None):
        calls.append(path)
        if len(calls) > 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C half-way
        write_png(path, arr, text)

    monkeypatch.setattr(dataset, "write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=5, seed=1)
    assert sorted(p.name for p in (out / "image").iterdir()) == before
    assert [p.name for p in out.parent.iterdir()] == ["train"]  # the half-written set was removed
    with pytest.raises(UserError, match="^the number of patches per image must be at least 1$"):
        make_patches(tiny_dataset, "DRIVE", "train", size=64, patch=32, count=0)


def test_fov_mask_is_read_when_present_and_checked(tmp_path):
    from dataset import load_split

    img, lab, fov = disc_image()
    write_png(tmp_path / "i.png", img)
    write_png(tmp_path / "l.png", lab)
    odd = np.zeros_like(fov)
    odd[:10, :10] = True  # nothing like the disc the estimator would find
    write_png(tmp_path / "m.png", odd)
    s = load_sample(tmp_path / "i.png", tmp_path / "l.png", tmp_path / "m.png")
    assert s.name == "i" and np.array_equal(s.fov, odd) and np.array_equal(s.label, lab)
    estimated = load_sample(tmp_path / "i.png", tmp_path / "l.png").fov
    assert (estimated == fov).mean() > 0.97
    write_png(tmp_path / "small.png", odd[:-1])
    with pytest.raises(UserError, match="small.png does not have the size"):
        load_sample(tmp_path / "i.png", tmp_path / "l.png", tmp_path / "small.png")

    d = tmp_path / "DRIVE" / "test"
    for sub, arr in (("image", img), ("label", lab)):
        write_png(d / sub / "01_testing.png", arr)
    with pytest.raises(UserError, match=f"01_testing.png has no FOV mask in {d / 'mask'}$"):
        pair_files(d, require_mask=True)
    [s] = load_split(tmp_path, "DRIVE", "test")
    assert s.name == "01_testing" and s.image.shape == img.shape


def test_one_patch_the_size_of_the_image_into_a_new_nested_folder(tiny_dataset, tmp_path):
    n = make_patches(tiny_dataset, "DRIVE", "train", size=48, patch=48, count=1, out_root=tmp_path / "a" / "b")
    assert n == 3
    rows = read_patch_manifest(tmp_path / "a" / "b" / "train")
    assert {(r["x"], r["y"]) for r in rows.values()} == {("0", "0")}


def test_default_augmentation_is_the_one_the_shipped_weights_were_trained_with():
    """`python train.py` must keep the augmentation the shipped weights were trained with: the
    same steps, ranges and (nearest-neighbour) interpolation."""
    from torchvision.transforms import v2

    steps = augmentation().transforms
    assert [type(t).__name__ for t in steps] == ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomAffine",
                                                 "ColorJitter"]
    affine = steps[2]
    assert affine.degrees == [-180.0, 180.0] and tuple(affine.scale) == (0.9, 1.1)
    assert v2.InterpolationMode(affine.interpolation) == v2.InterpolationMode.NEAREST
    assert tuple(augmentation(scale=(0.7, 1.8)).transforms[2].scale) == (0.7, 1.8)
    assert type(augmentation(crop=256).transforms[-1]).__name__ == "RandomCrop"


def test_strong_augmentation_changes_the_look_of_the_image_never_the_label():
    """--augment strong draws the same geometry as the default (labels identical for the same seed)
    and adds gamma and blur/sharpening to the image only."""
    import torch

    rng = np.random.default_rng(0)
    img = (rng.random((48, 40)) * 255).astype(np.uint8)
    lab = rng.random((48, 40)) > 0.7
    changed = 0
    for seed in range(8):
        torch.manual_seed(seed)
        x0, y0 = VesselDataset([img], [lab], augmentation("default"))[0]
        torch.manual_seed(seed)
        x1, y1 = VesselDataset([img], [lab], augmentation("strong"))[0]
        assert torch.equal(y0, y1)  # photometric steps leave the label alone
        assert set(y1.unique().tolist()) <= {0.0, 1.0}
        changed += not torch.equal(x0, x1)
    assert changed >= 4  # gamma on half, blur or sharpening on two thirds of the samples


def test_random_gamma_stays_in_its_range():
    import torch
    from torchvision import tv_tensors

    from training_data import RandomGamma

    img = tv_tensors.Image(torch.full((1, 4, 4), 64, dtype=torch.uint8))
    lo, hi = 255 * (64 / 255) ** 1.5, 255 * (64 / 255) ** 0.7
    values = {int(RandomGamma((0.7, 1.5))(img)[0, 0, 0]) for _ in range(200)}
    assert min(values) >= int(lo) and max(values) <= round(hi) + 1
    assert max(values) - min(values) > 40  # the factor is drawn, not fixed
    mask = tv_tensors.Mask(torch.ones((1, 4, 4), dtype=torch.uint8))
    assert torch.equal(RandomGamma((0.7, 1.5))(mask), mask)


def test_camera_look_alters_the_photograph_then_enhances_it_never_the_label():
    """--augment camera: each draw alters the gray photograph (illumination, haze, gamma, blur,
    noise), then enhances the altered one; the label comes out as it went in; the seed fixes it."""
    import torch

    from training_data import CameraLook

    rng = np.random.default_rng(0)
    img = (60 + rng.random((48, 40)) * 120).astype(np.uint8)
    lab = rng.random((48, 40)) > 0.7
    seen = []
    look = CameraLook(lambda g: seen.append(g.copy()) or (255 - g))  # an "enhancement" easy to recognise
    ds = VesselDataset([img], [lab], None, look)
    draws = []
    for seed in (0, 1, 2, 3, 0):
        torch.manual_seed(seed)
        x, y = ds[0]
        assert np.array_equal(y[0].numpy().astype(bool), lab)
        assert seen[-1].dtype == np.uint8 and seen[-1].shape == img.shape
        assert np.allclose(x[0].numpy(), (255 - seen[-1]) / 255.0)  # enhanced after it was altered
        ratio = seen[-1].mean() / img.mean()
        assert 0.5 < ratio < 2.0, ratio  # another look of the same photograph, not another picture
        assert np.corrcoef(seen[-1].ravel(), img.ravel())[0, 1] > 0.3
        draws.append(seen[-1])
    assert np.array_equal(draws[0], draws[-1])  # same seed, same look
    assert all(not np.array_equal(draws[0], d) for d in draws[1:4])
    assert not np.array_equal(draws[0], img)
