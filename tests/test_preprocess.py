import numpy as np

from preprocess import equalize, estimate_fov, fov_diameter, resize, to_gray
from conftest import disc_image


def test_gray_conversion_is_idempotent_and_matches_luma():
    img, _, _ = disc_image()
    g = to_gray(img)
    assert g.ndim == 2 and g.dtype == np.uint8
    assert np.array_equal(to_gray(g), g)
    expect = np.round(0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])
    assert np.abs(g.astype(int) - expect).max() <= 1


def test_equalize_spreads_a_narrow_histogram():
    narrow = np.random.default_rng(0).integers(100, 120, (64, 64)).astype(np.uint8)
    eq = equalize(narrow)
    assert eq.min() < 20 and eq.max() == 255
    assert np.array_equal(np.argsort(narrow.ravel(), kind="stable"), np.argsort(narrow.ravel(), kind="stable"))
    # monotone: order of gray levels is kept
    levels = np.unique(narrow)
    mapped = [eq[narrow == v][0] for v in levels]
    assert all(a <= b for a, b in zip(mapped, mapped[1:]))


def test_resize_keeps_labels_binary():
    _, label, _ = disc_image()
    out = resize(label, (512, 512))
    assert out.dtype == bool and out.shape == (512, 512)
    u8 = resize(label.astype(np.uint8) * 255, (512, 512), label=True)
    assert set(np.unique(u8)) <= {0, 255}


def test_fov_estimate_follows_the_radius_and_size():
    for h, w, r in ((120, 140, 50), (300, 400, 140), (90, 90, 30)):
        img, _, fov = disc_image(h, w, r)
        est = estimate_fov(img)
        iou = (est & fov).sum() / (est | fov).sum()
        assert iou > 0.92, (h, w, r, iou)  # a 1-pixel rim on a 30-pixel disc costs ~7 %
        assert abs(fov_diameter(est) - 2 * r) <= 4
        assert estimate_fov(to_gray(img)).sum() > 0.9 * fov.sum()


def test_fov_matches_official_drive_masks(drive_src):
    from imio import read_image, read_mask

    for n in ("21", "22", "23"):
        img = read_image(drive_src / "training" / "images" / f"{n}_training.tif")
        mask = read_mask(drive_src / "training" / "mask" / f"{n}_training_mask.gif")
        for im in (img, to_gray(img)):
            est = estimate_fov(im)
            assert (est & mask).sum() / (est | mask).sum() > 0.98
