import numpy as np
import pytest

from preprocess import equalize, estimate_fov, fov_diameter, resize, to_gray
from conftest import disc_image


def test_gray_conversion_is_idempotent_and_matches_luma():
    img, _, _ = disc_image()
    g = to_gray(img)
    assert g.ndim == 2 and g.dtype == np.uint8
    assert np.array_equal(to_gray(g), g)
    expect = np.round(0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2])
    assert np.abs(g.astype(int) - expect).max() <= 1


def test_green_channel_is_the_green_plane_and_unknown_channels_are_refused():
    import pytest

    img, _, _ = disc_image()
    assert np.array_equal(to_gray(img, "green"), img[..., 1])
    g = to_gray(img)
    assert np.array_equal(to_gray(g, "green"), g)  # a gray photograph has no green channel: used as it is
    with pytest.raises(ValueError, match="unknown channel"):
        to_gray(img, "red")


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


def test_fov_diameter_is_the_width_of_the_disc():
    from preprocess import fov_diameter

    fov = np.zeros((50, 80), bool)
    fov[10:40, 21:62] = True  # 41 columns wide, 30 rows tall
    assert fov_diameter(fov) == 41.0
    assert fov_diameter(np.zeros((50, 80), bool)) == 80.0  # nothing found: the image width


def test_enhance_dispatches_to_the_named_method():
    import pytest

    from preprocess import clahe, enhance, equalize

    g = np.clip(np.random.default_rng(0).normal(100, 6, (128, 128)), 0, 255).astype(np.uint8)  # a narrow histogram
    g[40:80, 30:90] += 40
    assert enhance(g, "none") is g
    assert np.array_equal(enhance(g, "equalize"), equalize(g))
    assert np.array_equal(enhance(g, "clahe"), clahe(g, clip=2.0, tile=8))
    assert not np.array_equal(clahe(g), clahe(g, clip=3.0)) and not np.array_equal(clahe(g), clahe(g, tile=9))
    with pytest.raises(ValueError, match="unknown enhancement 'sharpen'"):
        enhance(g, "sharpen")


def test_as_image_normalises_every_kind_of_array():
    import pytest

    from cli import UserError
    from preprocess import as_image

    g8 = np.full((10, 12), 128, np.uint8)
    assert as_image(g8) is g8
    assert as_image(np.full((10, 12), 65535, np.uint16)).max() == 255
    assert as_image(np.full((10, 12), 1000, np.uint16)).max() == 4  # 16-bit scale: 1000/65535*255
    assert as_image(np.full((10, 12), 200, np.int32)).max() == 200  # already 8-bit values
    assert as_image(np.full((10, 12), 0.5, np.float32)).max() == 128  # 0-1 floats
    assert as_image(np.full((10, 12), 200.0)).max() == 200  # 0-255 floats
    assert as_image(np.ones((10, 12), bool)).max() == 255
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 50, 255
    assert as_image(rgba).shape == (10, 12, 3) and as_image(rgba)[0, 0, 0] == 50
    assert as_image(np.full((10, 12, 2), 70, np.uint8)).shape == (10, 12)  # gray + alpha
    assert as_image(np.full((10, 12, 1), 70, np.uint8)).shape == (10, 12)
    for bad, msg in ((np.zeros((7, 20), np.uint8), "too small"), (np.full((9, 9), np.nan), "NaN"),
                     (np.zeros((9, 9, 5), np.uint8), "not an image"), (np.zeros(20, np.uint8), "not an image")):
        with pytest.raises(UserError, match=msg):
            as_image(bad)
    assert as_image(np.zeros((8, 8), np.uint8)).shape == (8, 8)  # the smallest allowed


def test_fov_depth_counts_from_the_mask_edge_and_the_image_border():
    """preprocess.fov_depth: one step (0.955, OpenCV's 3x3 mask) on the outermost pixels of the mask, the image's
    border an edge too, one more step per pixel inwards, 0 outside the mask."""
    from preprocess import fov_depth

    step = pytest.approx(0.955, abs=1e-3)
    full = np.ones((7, 9), bool)
    d = fov_depth(full)
    assert d[0, 4] == step and d[3, 0] == step and d[3, 4] / 4 == step and d[1, 1] / 2 == step
    half = full.copy()
    half[:, 5:] = False  # the mask's own edge, inside the image
    d = fov_depth(half)
    assert (d[:, 5:] == 0).all() and d[3, 4] == step and d[3, 3] / 2 == step
