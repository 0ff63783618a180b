"""Property-based fuzzing (Hypothesis) of everything that reads user input.

Property: a result of the input's size with values in range, or the project's UserError (one
line at the command line) -- never another exception, hang or crash. Examples are bounded and a
deadline stops slow cases, so this runs in CI.
"""
import gzip
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from cli import UserError
from conftest import REPO
from imio import read_image, read_mask, read_probability
from preprocess import MIN_SIDE, as_image, estimate_fov

FUZZ = settings(max_examples=40, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
DTYPES = st.sampled_from([np.uint8, np.uint16, np.bool_, np.float32, np.float64, np.int32])


@st.composite
def images(draw, max_side=300):
    """Arrays of random shape (1x1 up to max_side, odd sizes), dtype and channel count, with
    random, all-black, all-white or FOV-less content."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(DTYPES)
    shape = (h, w) if channels is None else (h, w, channels)
    kind = draw(st.sampled_from(["random", "black", "white", "disc"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "random":
        base = rng.random(shape)
    elif kind == "black":
        base = np.zeros(shape)
    elif kind == "white":
        base = np.ones(shape)
    else:
        yy, xx = np.mgrid[:h, :w]
        disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.45 * min(h, w)) ** 2) * 0.6
        base = disc if channels is None else np.repeat(disc[..., None], channels, axis=2)
        base = base + 0.05 * rng.random(shape)
    if dtype == np.bool_:
        return base > 0.5
    if dtype == np.uint8:
        return np.round(base * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(base * 65535).astype(np.uint16)
    if dtype == np.int32:
        return np.round(base * 255).astype(np.int32)
    return base.astype(dtype)


@pytest.fixture(scope="module")
def segmenters():
    from inference import Segmenter

    return [Segmenter.from_file(REPO / "UNet.onnx"), Segmenter.from_file(REPO / "UNet_patch_equalized_patch_256_50.onnx")]


@FUZZ
@given(img=images())
def test_fov_estimator_gives_a_mask_of_the_input_size_or_a_user_error(img):
    try:
        fov = estimate_fov(img)
    except UserError:
        assert min(img.shape[:2]) < MIN_SIDE or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4))
        return
    assert fov.dtype == bool and fov.shape == img.shape[:2]


@FUZZ
@given(img=images(max_side=200), which=st.integers(0, 1))
def test_segmenter_gives_maps_of_the_input_size_or_a_user_error(segmenters, img, which):
    seg = segmenters[which]
    try:
        prob, mask = seg.segment(img)
    except UserError as exc:
        assert "\n" not in str(exc)
        assert min(img.shape[:2]) < MIN_SIDE
        return
    assert prob.shape == mask.shape == img.shape[:2]
    assert prob.dtype == np.float32 and np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    assert mask.dtype == bool and not mask[prob < seg.threshold].any()


@FUZZ
@given(img=images(max_side=120), fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "JPEG", "PPM"]),
       cut=st.floats(0.0, 1.0), gz=st.booleans())
def test_image_readers_read_or_refuse_any_file(tmp_path_factory, img, fmt, cut, gz):
    """Real images of many kinds, whole or truncated, plain or gzip-compressed."""
    arr = np.asarray(img)
    if arr.dtype == bool or arr.dtype.kind == "f" or arr.dtype == np.int32:
        arr = (np.asarray(arr, np.float64) > 0.5).astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[2] == 2:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint16 and (fmt not in ("PNG", "TIFF") or arr.ndim == 3):
        arr = (arr >> 8).astype(np.uint8)
    if fmt in ("JPEG", "PPM", "GIF", "BMP") and arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    data = buf.getvalue()
    if cut < 0.9:
        data = data[: int(len(data) * cut)]
    if gz:
        data = gzip.compress(data)
    path = tmp_path_factory.mktemp("fz") / f"x.{fmt.lower()}{'.gz' if gz else ''}"
    path.write_bytes(data)
    for reader in (read_image, read_mask, read_probability):
        try:
            out = reader(path)
        except UserError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            continue
        assert out.shape[:2] == arr.shape[:2]
        if reader is read_probability:
            assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
        elif reader is read_mask:
            assert out.dtype == bool
        else:
            assert out.dtype == np.uint8 and (out.ndim == 2 or out.shape[2] == 3)


GZ_HEADER = gzip.compress(b"P5 8 8 255 " + bytes(64))[:10]


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".png", ".jpg", ".tif", ".gif", ".ppm.gz", ".png.gz"]),
       gz_header=st.booleans())
def test_random_bytes_under_image_names_are_refused_in_one_line(tmp_path_factory, data, suffix, gz_header):
    """Random bytes, also behind a valid gzip header (a damaged .gz download)."""
    path = tmp_path_factory.mktemp("fz") / f"junk{suffix}"
    path.write_bytes(GZ_HEADER + data if gz_header else data)
    for reader in (read_image, read_mask, read_probability):
        try:
            reader(path)
        except UserError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=25, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999), junk=st.binary(max_size=200), suffix=st.sampled_from([".pth", ".onnx"]))
def test_model_loaders_refuse_damaged_files_in_one_line(tmp_path_factory, cut, junk, suffix):
    from inference import load_net

    good = (REPO / f"UNet{suffix}").read_bytes()
    path = tmp_path_factory.mktemp("fz") / f"m{suffix}"
    path.write_bytes(good[: int(len(good) * cut)] + junk)
    with pytest.raises(UserError) as exc:
        load_net(path)
    assert "\n" not in str(exc.value)


@FUZZ
@given(img=images(max_side=64))
def test_as_image_normalises_or_refuses(img):
    try:
        out = as_image(img)
    except UserError:
        assert min(img.shape[:2]) < MIN_SIDE
        return
    assert out.dtype == np.uint8 and out.shape[:2] == img.shape[:2] and out.ndim in (2, 3)
