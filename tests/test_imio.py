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


def test_probability_maps_round_trip_at_16_bits_and_read_8_bit_and_float(tmp_path):
    from imio import read_probability, write_probability

    prob = np.random.default_rng(2).random((17, 23)).astype(np.float32)
    prob[0, :3] = [-0.5, 1.5, 1.0]  # clipped to [0, 1] on writing
    write_probability(tmp_path / "p.png", prob)
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode.startswith("I;16") and im.size == (23, 17)
    back = read_probability(tmp_path / "p.png")
    assert back.dtype == np.float32 and back.shape == (17, 23)
    assert np.abs(back - np.clip(prob, 0, 1)).max() <= 0.5 / 65535 + 1e-7
    assert back[0, 0] == 0 and back[0, 1] == 1 and back[0, 2] == 1

    eight = np.array([[0, 51, 255]], np.uint8)
    Image.fromarray(eight).save(tmp_path / "e.png")
    assert np.allclose(read_probability(tmp_path / "e.png"), [[0, 0.2, 1]])
    colour = np.dstack([eight, 255 - eight, 255 - eight])  # read from the first channel
    Image.fromarray(colour).save(tmp_path / "c.png")
    assert np.allclose(read_probability(tmp_path / "c.png"), [[0, 0.2, 1]])
    Image.fromarray(np.array([[-1.0, 0.25, 3.0]], np.float32)).save(tmp_path / "f.tif")
    assert np.allclose(read_probability(tmp_path / "f.tif"), [[0, 0.25, 1]])
    (tmp_path / "bad.png").write_text("no")
    with pytest.raises(UserError, match="bad.png"):
        read_probability(tmp_path / "bad.png")


def test_png_text_chunks_bool_masks_and_file_permissions(tmp_path):
    import os

    from imio import png_text

    write_png(tmp_path / "m.png", np.array([[True, False]]), text={"threshold": 0.25, "model": "UNet"})
    assert png_text(tmp_path / "m.png") == {"threshold": "0.25", "model": "UNet"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), [[255, 0]])
    assert png_text(tmp_path / "absent.png") == {}
    (tmp_path / "t.png").write_text("no")
    assert png_text(tmp_path / "t.png") == {}
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "m.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_pil_modes_become_uint8_gray_or_rgb(tmp_path):
    bilevel = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    bilevel.save(tmp_path / "b.png")
    assert np.array_equal(read_image(tmp_path / "b.png"), [[0, 255], [255, 0]])
    Image.fromarray(np.array([[0, 100, 200]], np.int32), mode="I").save(tmp_path / "i_small.tif")
    assert np.array_equal(read_image(tmp_path / "i_small.tif"), [[0, 100, 200]])  # already 0-255
    Image.fromarray(np.array([[0, 65535, 32768]], np.int32), mode="I").save(tmp_path / "i_big.tif")
    assert np.array_equal(read_image(tmp_path / "i_big.tif"), [[0, 255, 128]])  # 16-bit range
    Image.fromarray(np.array([[10, 20]], np.uint8)).convert("LA").save(tmp_path / "la.png")
    assert np.array_equal(read_image(tmp_path / "la.png"), [[10, 20]])
    grey_rgb = np.dstack([np.array([[5, 250]], np.uint8)] * 3)  # RGB file with gray content: HxW
    Image.fromarray(grey_rgb).save(tmp_path / "gr.png")
    assert read_image(tmp_path / "gr.png").shape == (1, 2)


def test_masks_names_and_listing_edge_cases(tmp_path, capsys):
    rgb_mask = np.zeros((2, 3, 3), np.uint8)
    rgb_mask[0, 0, 2] = 200  # foreground in the blue channel only
    rgb_mask[1, 1] = 127  # 127 is background in a 0-255 mask, 128 would be foreground
    rgb_mask[1, 2] = 128
    Image.fromarray(rgb_mask).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), [[True, False, False], [False, False, True]])

    assert is_image_file("A.PNG") and is_image_file("b.Ppm.GZ") and is_image_file("x.tiff")
    assert not is_image_file("a.gz") and not is_image_file(".hidden.png") and not is_image_file("png")
    assert stem("A.PNG.GZ") == "A" and stem("dir/im0001.png") == "im0001"

    with pytest.raises(UserError, match="labels expected"):
        list_images(tmp_path / "absent", "labels")
    (tmp_path / ".DS_Store").write_text("x")
    (tmp_path / "sub").mkdir()
    capsys.readouterr()
    assert [p.name for p in list_images(tmp_path)] == ["m.png"]
    err = capsys.readouterr().err
    assert "sub" in err and ".DS_Store" not in err  # hidden files are skipped silently


def test_decompression_bomb_is_a_user_error(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", np.zeros((100, 100), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is over twice this
    with pytest.raises(UserError, match="megapixels"):
        read_image(tmp_path / "big.png")


def test_replace_dir_swaps_whole_folders(tmp_path):
    from imio import replace_dir

    final, new = tmp_path / "DRIVE", tmp_path / "new"
    (final / "old").mkdir(parents=True)
    (new / "fresh").mkdir(parents=True)
    replace_dir(new, final)
    assert [p.name for p in final.iterdir()] == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DRIVE"]  # the old copy is gone, nothing aside
    newer = tmp_path / "newer"
    newer.mkdir()
    replace_dir(newer, tmp_path / "STARE")  # nothing to replace
    assert (tmp_path / "STARE").is_dir() and not newer.exists()


def test_uint8_conversion_of_16_bit_float_and_32_bit_files(tmp_path):
    big_endian = Image.fromarray(np.array([[0, 65535, 32896]], ">u2"))  # TIFFs from some cameras
    assert big_endian.mode == "I;16B"
    big_endian.save(tmp_path / "b.tif")
    cases = {
        "b.tif": [[0, 255, 128]],
        "i255.tif": ([[0, 128, 255]], np.int32, [[0, 128, 255]]),  # 0-255 content stays as it is
        "i256.tif": ([[0, 256, 65535]], np.int32, [[0, 1, 255]]),  # above 255: a 16-bit range
        "i_out.tif": ([[-1000, 70000, 65535]], np.int32, [[0, 255, 255]]),  # clipped, no wrap-around
        "i_edge.tif": ([[0, 256]], np.int32, [[0, 1]]),  # 256 is already beyond 0-255
        "f.tif": ([[0.0, 1000.0, 65535.0]], np.float32, [[0, 4, 255]]),
    }
    for name, case in cases.items():
        if name != "b.tif":
            values, dtype, want = case
            Image.fromarray(np.array(values, dtype)).save(tmp_path / name)
        else:
            want = case
        got = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, want), name
    Image.fromarray(np.array([[0, 200]], np.uint16)).save(tmp_path / "dark16.png")  # a dark 16-bit file
    assert np.array_equal(read_image(tmp_path / "dark16.png"), [[0, 1]])  # 200 of 65535, not of 255
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[..., 0] = 200  # green == blue, red differs: a colour image, not gray
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").shape == (1, 2, 3)


def test_temporary_files_are_hidden_beside_the_target(tmp_path):
    from pathlib import Path

    from imio import atomic_replace

    seen = []

    def write(tmp):
        seen.append(Path(tmp))
        Path(tmp).write_text("x")

    atomic_replace(tmp_path / "out" / "res.png", write)
    atomic_replace(tmp_path / "out" / "log", write)
    atomic_replace(tmp_path / "out" / "w.pth", write, suffix=".tmp")
    for tmp, want_suffix in zip(seen, (".png", ".tmp", ".tmp")):
        # same folder (an atomic rename), hidden (list_images skips it), a suffix PIL/torch accept
        assert tmp.parent == tmp_path / "out" and tmp.name.startswith(".") and tmp.suffix == want_suffix
    assert seen[0].name.startswith(".res.png.")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log", "res.png", "w.pth"]


def test_oversized_image_message_says_the_limit(tmp_path, monkeypatch):
    write_png(tmp_path / "big.png", np.zeros((1500, 1500), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(UserError, match=r"big.png: larger than 2 megapixels; downscale it before segmenting"):
        read_image(tmp_path / "big.png")


def test_8_bit_probability_maps_are_float32(tmp_path):
    from imio import read_probability

    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "p.png")
    assert read_probability(tmp_path / "p.png").dtype == np.float32
