import gzip

import numpy as np
import pytest
from PIL import Image

from cli import UserError
from imio import is_image_file, list_images, read_image, read_mask, stem, write_png


def test_rgb_gray_rgba_palette_16bit_jpeg_ppm_gz(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)

    Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])).save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)

    gray = rgb[..., 1]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "g.png"), gray)

    Image.fromarray(rgb).convert("P").save(tmp_path / "p.gif")
    pal = read_image(tmp_path / "p.gif")
    assert pal.shape == (20, 30, 3) and pal.dtype == np.uint8

    g16 = (gray.astype(np.uint16) * 257)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    im16 = Image.open(tmp_path / "g16.png")
    assert im16.mode.startswith("I")  # really a 16-bit file
    assert np.array_equal(read_image(tmp_path / "g16.png"), gray)
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    assert np.array_equal(read_image(tmp_path / "g16.tif"), gray)

    smooth = np.dstack([np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))] * 3)
    smooth[..., 0] //= 2
    Image.fromarray(smooth).save(tmp_path / "j.jpg", quality=95)
    jpg = read_image(tmp_path / "j.jpg")
    assert jpg.shape == smooth.shape and np.abs(jpg.astype(int) - smooth).mean() < 3

    buf = tmp_path / "x.ppm"
    Image.fromarray(rgb).save(buf)
    (tmp_path / "x.ppm.gz").write_bytes(gzip.compress(buf.read_bytes()))
    assert np.array_equal(read_image(tmp_path / "x.ppm.gz"), rgb)


def test_truncated_and_missing_files_raise_user_error(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UserError, match="text.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(UserError, match="no such file"):
        read_image(tmp_path / "absent.png")


def test_read_mask_binarises_0_1_and_0_255(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(tmp_path / "01.png")
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(tmp_path / "0255.png")
    expect = np.array([[False, True], [True, False]])
    assert np.array_equal(read_mask(tmp_path / "01.png"), expect)
    assert np.array_equal(read_mask(tmp_path / "0255.png"), expect)


def test_list_images_skips_non_images_with_warning(tmp_path, capsys):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]
    assert "notes.txt" in capsys.readouterr().err
    assert is_image_file("im0001.ah.ppm.gz") and not is_image_file("a.txt")
    assert stem("im0001.ah.ppm.gz") == "im0001.ah"


def test_write_png_is_atomic_on_failure(tmp_path):
    target = tmp_path / "keep.png"
    write_png(target, np.full((5, 5), 7, np.uint8))
    with pytest.raises(TypeError):
        write_png(target, np.full((5, 5), 7, np.uint8).astype(object))
    assert np.array_equal(read_image(target), np.full((5, 5), 7, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temporary left behind
