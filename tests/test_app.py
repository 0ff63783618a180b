"""The web app: its functions without a server, its API with a server, and the page in a real browser."""
import contextlib
import csv
import os
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cli import UserError
from conftest import REPO
from imio import read_image, read_mask, read_probability, write_png
from inference import Segmenter
from preprocess import resize
import av

SAMPLE = REPO / "predict" / "img.png"
CHROMIUM = "/usr/lib/chromium/chromium"


@pytest.fixture(scope="module")
def app():
    from app import App, Models, find_models

    return App(Models(find_models(REPO)))


@pytest.fixture(scope="module")
def reference():
    """What predict.py writes for the sample image (result/res.png), computed by the same command."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, REPO / "predict.py", "--input", SAMPLE, "--output", tmp, "--prob"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return read_image(Path(tmp) / "img.png"), read_probability(Path(tmp) / "img_prob.png")


def test_models_have_readable_names_and_prefer_onnx():
    from app import find_models

    models = find_models(REPO)
    assert list(models)[:4] == ["DRIVE, whole image", "DRIVE, patch method (original)", "DRIVE, fast", "STARE"]
    assert models["DRIVE, whole image"].name == "UNet.onnx"


def test_segment_gives_predict_py_mask_and_lossless_downloads(app, reference):
    over, mask, prob, info, mask_file, prob_file = app.segment(str(SAMPLE), "DRIVE, whole image")
    ref_mask, ref_prob = reference
    assert np.array_equal(mask, ref_mask) and np.array_equal(read_image(mask_file), ref_mask)
    assert Path(mask_file).name == "img_mask.png" and np.array_equal(read_probability(prob_file), ref_prob)
    assert Path(prob_file).name == "img_prob.png"  # named after the photograph, as what they are
    assert over.shape == (584, 565, 3) and prob.shape == (584, 565)
    assert info["image size"] == "565 x 584 px" and info["FOV diameter"].endswith(" px")
    fraction = float(info["vessel area inside the FOV"].rstrip(" %"))
    assert 8 < fraction < 20
    # what each time is: the model's own, and the server's whole share of the wait (reading to writing)
    model_s = float(info["segmentation (the model, on the server)"].removesuffix(" s"))
    server_s = float(info["time on the server (reading, segmenting, writing the files)"].removesuffix(" s"))
    assert 0 < model_s < server_s
    # the threshold slider changes the mask; the model's own threshold is the default
    stored = app.models.threshold("DRIVE, whole image")
    low = app.segment(str(SAMPLE), "DRIVE, whole image", threshold=stored / 2)[1]
    assert (low > 0).sum() > (mask > 0).sum()
    assert info["threshold"] == f"{stored:.3f}" and info["gaps bridged along the map"] == "no"
    # bridging: predict.py --bridge's mask, and said so
    _, bridged, _, info_b, _, _ = app.segment(str(SAMPLE), "DRIVE, whole image", bridge=True)
    expect = Segmenter.from_file(REPO / "UNet.onnx", bridge=True).segment(read_image(SAMPLE))[1]
    assert np.array_equal(bridged > 0, expect) and (bridged > 0).sum() > (mask > 0).sum()
    assert info_b["gaps bridged along the map"] == "yes"
    # the measuring setting the page's button fills in: predict.py --tree's mask, specks said
    tree = app.models.tree("DRIVE, whole image")
    _, treed, _, info_t, _, _ = app.segment(str(SAMPLE), "DRIVE, whole image", threshold=tree["threshold"],
                                            bridge=tree["bridge"], min_fragment=tree["min_fragment"],
                                            thin=tree.get("thin", 0.0))
    seg = Segmenter.from_file(REPO / "UNet.onnx")
    seg.use_tree()
    assert np.array_equal(treed > 0, seg.segment(read_image(SAMPLE))[1]) and seg.min_fragment == 20
    assert info_t["specks removed (px at DRIVE's scale)"] == "20" and info["specks removed (px at DRIVE's scale)"] == "none"
    # thin vessels kept as centrelines: predict.py --thin-vessels's mask, longer by 1 px lines only, and said so
    _, thin, _, info_w, _, _ = app.segment(str(SAMPLE), "DRIVE, whole image", thin=0.05)
    expect = Segmenter.from_file(REPO / "UNet.onnx", thin=0.05).segment(read_image(SAMPLE))[1]
    assert np.array_equal(thin > 0, expect) and ((thin > 0) & (mask == 0)).sum() > 100
    assert not ((mask > 0) & (thin == 0)).any()
    assert info_w["thin vessels kept as centrelines down to probability"] == "0.050"
    assert info["thin vessels kept as centrelines down to probability"] == "no"


def test_how_it_works_shows_every_stage_of_both_methods(app):
    patch, whole, disc = app.explain(str(SAMPLE), "DRIVE, patch method (original)", "DRIVE, whole image")
    captions = [c for _, c in patch]
    assert len(patch) == 9 and captions[0].startswith("1. the colour") and "equalized" in captions[4]
    assert "9 overlapping 256x256 windows" in captions[3]
    assert patch[2][0].shape == (512, 512) and patch[-1][0].shape == (584, 565)
    assert [c.split(".")[0] for _, c in whole] == ["1", "2", "3", "4", "5"] and "CLAHE" in whole[1][1]
    # the shipped pair reads gray and green: both planes are shown, side by side, and named
    assert whole[0][1].startswith("1. gray | green channels") and whole[0][0].shape == (584, 2 * 565)
    assert whole[1][0].shape == (584, 2 * 565) and whole[2][0].shape == (584, 565)
    # how the optic disc was found: the maps at the working scale, then the disc and zones on the photograph
    assert [c.split(".")[0] for _, c in disc] == ["1", "2", "3", "4", "5", "6"]
    assert "eye: left (OS)" in disc[5][1] and disc[5][0].shape == (584, 565, 3)
    assert disc[3][0].ndim == 3 and (disc[3][0] == (255, 220, 0)).all(axis=2).any()  # the region is drawn
    assert (disc[4][0] == (255, 0, 255)).all(axis=2).any()  # the fitted circle is drawn on the fit
    # the last stage is the method's real result
    seg = Segmenter.from_file(REPO / "UNet_patch_equalized_patch_256_50.onnx")
    assert np.array_equal(patch[-1][0] > 0, seg.segment(read_image(SAMPLE))[1])


def test_a_network_input_of_several_channels_is_shown_side_by_side():
    from app import channels_view

    gray, colour = np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.uint8)
    assert channels_view(gray) is gray and channels_view(colour) is colour
    two = np.dstack([np.full((4, 5), 10, np.uint8), np.full((4, 5), 20, np.uint8)])  # gray | green
    view = channels_view(two)
    assert view.shape == (4, 10) and (view[:, :5] == 10).all() and (view[:, 5:] == 20).all()


def test_check_uses_evaluate_metrics(app, drive_src):
    from dataset import Sample
    from evaluate import evaluate

    photo = drive_src / "test" / "images" / "01_test.tif"
    label = drive_src / "test" / "1st_manual" / "01_manual1.gif"
    fov = drive_src / "test" / "mask" / "01_test_mask.gif"
    rows, emap, lines = app.check(str(photo), str(label), str(fov), "DRIVE, whole image")
    seg = Segmenter.from_file(REPO / "UNet.onnx")
    img, lab, f = read_image(photo), read_mask(label), read_mask(fov)
    prob = seg.probability(img, f)
    expect, _, _ = evaluate([Sample("01", img, lab, f)], [prob], seg.threshold)
    assert rows["f1"] == f"{expect['f1']:.4f}" and rows["auc_roc"] == f"{expect['auc_roc']:.4f}"
    assert float(rows["f1"]) > 0.75
    assert emap.shape == (584, 565, 3)
    assert (emap[~f] == 0).all()  # nothing outside the FOV
    assert {(255, 255, 255), (230, 40, 40), (40, 120, 255)} <= {tuple(c) for c in emap[f][::50]}
    # topology, as evaluate.py computes it, and the centreline map: blue exactly where the annotated
    # centreline is missed, red where the model's runs outside the annotation
    assert rows["cldice"] == f"{expect['cldice']:.4f}" and rows["length_error"] == f"{expect['length_error']:+.1%}"
    assert rows["betti0_error"] == f"{expect['betti0_error']:.0f}" and float(rows["cldice"]) > 0.7
    from topology import centreline_pieces

    _, missed, false = centreline_pieces(prob >= seg.threshold, lab, f)
    blue, red = (lines == (40, 120, 255)).all(-1), (lines == (230, 40, 40)).all(-1)
    assert np.array_equal(blue, missed & ~false) and np.array_equal(red, false) and missed.sum() > 100
    assert (lines[~f] == 0).all() and (lines == 255).all(-1).sum() > 3 * missed.sum()
    rows2, _, _ = app.check(str(photo), str(label), None, "DRIVE, whole image")
    assert rows2["FOV"].startswith("estimated") and abs(float(rows2["f1"]) - float(rows["f1"])) < 0.01


def test_measure_gives_measure_py_figures_with_units_and_the_calibre_overlay(app):
    from morphometry import measure_mask
    from preprocess import estimate_fov

    *_, mask_file, _ = app.segment(str(SAMPLE), "DRIVE, whole image")
    text, by_calibre = app.measure(str(SAMPLE), mask_file)
    image = read_image(SAMPLE)
    expect, _, _ = measure_mask(read_mask(mask_file), estimate_fov(image))
    assert f"| centreline length | {expect['centreline_length_px']:.4g} | px |" in text
    assert f"| branch points | {expect['n_branch_points']} |" in text and "{" not in text  # a table, not JSON
    assert by_calibre.shape == (584, 565, 3) and not np.array_equal(by_calibre, image)
    other = Path(mask_file).with_name("other.png")
    write_png(other, np.zeros((40, 50), bool))
    with pytest.raises(UserError, match="does not belong to this photograph"):
        app.measure(str(SAMPLE), str(other))


def test_batch_writes_a_zip_and_csv_and_reports_bad_files(app, tmp_path):
    small = resize(read_image(SAMPLE), (300, 310))
    write_png(tmp_path / "a.png", small)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        z.write(tmp_path / "a.png", "inner/b.png")
        z.writestr("readme.txt", "skipped")
    zip_path, csv_path, rows = app.batch([str(tmp_path / "a.png"), str(tmp_path / "junk.png"),
                                          str(tmp_path / "more.zip")], "DRIVE, fast")
    assert [r["image"] for r in rows] == ["a.png", "junk.png", "inner/b.png"]
    assert rows[1]["error"].startswith("junk.png: not a readable image") and not rows[0]["error"]
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    assert table[0]["width"] == "300" and float(table[0]["vessel_fraction_in_fov"]) > 0.05
    with zipfile.ZipFile(zip_path) as z:
        assert sorted(z.namelist()) == ["a.png", "a_prob.png", "b.png", "b_prob.png", "results.csv"]
        z.extractall(tmp_path / "out")
    # every vessel measurement per photograph, as measure.py takes it from the mask and the photograph
    from morphometry import measure_mask
    from preprocess import estimate_fov

    expect, _, _ = measure_mask(read_mask(tmp_path / "out" / "a.png"), estimate_fov(small))
    for key in ("centreline_length_px", "mean_calibre_px", "fd_mask", "distance_factor", "n_branch_points"):
        assert float(table[0][key]) == pytest.approx(expect[key], rel=1e-5), key
    assert table[1]["centreline_length_px"] == "" and table[1]["error"]


AV_MODEL = "DRIVE-AV + LES-AV, arteries and veins"


def test_arteries_and_veins_give_predict_py_classes_and_its_crae_crve_avr(app, tmp_path):
    """The A/V tab: predict.py --av's colour map, pixel for pixel, and its CRAE/CRVE/AVR in the table;
    the zone B picture draws the vessels used in full colour; a vessel-only model is refused in one line."""
    import predict

    shown, zone, table, av_file = app.arteries_veins(str(SAMPLE), AV_MODEL)
    predict.main(["--av", "--input", str(SAMPLE), "--output", str(tmp_path), "--measure"])
    colour = read_image(tmp_path / "img_av.png")
    assert np.array_equal(read_image(av_file), colour)
    with open(tmp_path / "measurements.csv") as f:
        row = next(csv.DictReader(f))
    assert row["avr"] and f"{float(row['avr']):.3f}" in table and f"{float(row['crae_px']):.2f} px" in table
    vessels = colour.any(axis=2)
    assert np.array_equal(shown[vessels], colour[vessels])  # the classes over the photograph
    used = {k: np.all(zone == c, axis=2).sum() for k, c in (("artery", (255, 0, 0)), ("vein", (0, 0, 255)))}
    assert used["artery"] > 50 and used["vein"] > 50 and zone.shape == colour.shape
    with pytest.raises(UserError, match="vessel-only model"):
        app.arteries_veins(str(SAMPLE), "DRIVE, fast")
    # with the flip: predict.py --av --tta's map, and not the plain one
    flipped = app.arteries_veins(str(SAMPLE), AV_MODEL, tta=True)[3]
    predict.main(["--av", "--tta", "--input", str(SAMPLE), "--output", str(tmp_path / "tta")])
    assert np.array_equal(read_image(flipped), read_image(tmp_path / "tta" / "img_av.png"))
    assert not np.array_equal(read_image(flipped), colour)


def test_a_batch_with_the_artery_vein_model_adds_its_maps_and_crae_crve_avr(app, tmp_path):
    import predict

    write_png(tmp_path / "in" / "a.png", read_image(SAMPLE))
    zip_path, csv_path, rows = app.batch([str(tmp_path / "in" / "a.png")], AV_MODEL)
    with zipfile.ZipFile(zip_path) as z:
        assert sorted(z.namelist()) == ["a.png", "a_av.png", "a_prob.png", "results.csv"]
        z.extractall(tmp_path / "zip")
    predict.main(["--av", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "p"), "--measure"])
    assert np.array_equal(read_image(tmp_path / "zip" / "a_av.png"), read_image(tmp_path / "p" / "a_av.png"))
    with open(tmp_path / "p" / "measurements.csv") as f:
        want = next(csv.DictReader(f))
    for key in ("crae_px", "crve_px", "avr", "n_arteries_zoneB"):
        assert float(rows[0][key]) == pytest.approx(float(want[key]), rel=1e-5), key


def test_batch_summary_counts_the_failures():
    from app import batch_summary

    good, bad = {"image": "a.png", "error": ""}, {"image": "b.png", "error": "b.png: not a readable image"}
    assert batch_summary([good, good], 2) == "All 2 segmented."
    assert batch_summary([good, bad, good, bad], 4) == "2 of 4 segmented; 2 could not be segmented — see results.csv."
    assert batch_summary([good], 3) == "Stopped: 1 of 3 segmented."
    assert batch_summary([bad], 3) == "Stopped: 0 of 3 segmented; 1 could not be segmented — see results.csv."


def test_a_photograph_above_the_pixel_limit_is_refused_before_it_is_decoded(app, tmp_path, monkeypatch):
    """A 12000x9000 photograph: refused from its header in one line (it took 4.6 GB and 40 s before)."""
    import warnings

    from PIL import Image, ImageFile

    from app import MAX_PIXELS

    Image.new("L", (12000, 9000)).save(tmp_path / "huge.png")  # a few hundred KB on disk, 108 megapixels
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the pixels were decoded"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Pillow's decompression-bomb warning in the server's log
        with pytest.raises(UserError, match="huge.png: 12000x9000 is 108 megapixels, more than the 40 accepted"):
            app.segment(str(tmp_path / "huge.png"), "DRIVE, whole image")
    zip_path, _, rows = app.batch([str(tmp_path / "huge.png")], "DRIVE, fast")
    assert "more than the 40 accepted" in rows[0]["error"] and MAX_PIXELS == 40_000_000


def test_a_batch_stopped_part_way_keeps_what_is_done(app, tmp_path):
    """Stop after the first of three photographs: the batch ends there; the zip and results.csv hold that one."""
    seg = app.models.get("DRIVE, fast")
    images = [resize(read_image(SAMPLE), (w, w + 10)) for w in (200, 240, 280)]
    for i, img in enumerate(images):
        write_png(tmp_path / f"p{i}.png", img)
    paths = [str(tmp_path / f"p{i}.png") for i in range(3)]
    seen = []
    for folder, rows, total in app.batch_steps(paths, "DRIVE, fast"):
        seen.append(len(rows))
        if len(rows) == 0:
            assert total == 3 and app.package(folder)[2] == []  # nothing done yet: an empty table, no error
        if len(rows) == 1:
            app.stop(folder)  # what the Stop button does, while the next photograph is under way
    assert seen == [0, 1]
    zip_path, csv_path, table = app.package(folder)
    assert [r["image"] for r in table] == ["p0.png"] and table[0]["width"] == "200"
    with zipfile.ZipFile(zip_path) as z:
        assert sorted(z.namelist()) == ["p0.png", "p0_prob.png", "results.csv"]
        z.extractall(tmp_path / "out")
    assert np.array_equal(read_image(tmp_path / "out" / "p0.png") > 0, seg.segment(images[0])[1])
    app.stop(folder)  # a late Stop is harmless, and the next batch runs to its end
    assert [r["image"] for r in app.batch(paths, "DRIVE, fast")[2]] == ["p0.png", "p1.png", "p2.png"]


def test_a_zip_with_the_same_name_in_two_folders_keeps_both(app, tmp_path):
    seg = app.models.get("DRIVE, fast")
    left = resize(read_image(SAMPLE), (250, 260))
    right = left[:, ::-1].copy()
    write_png(tmp_path / "l.png", left)
    write_png(tmp_path / "r.png", right)
    with zipfile.ZipFile(tmp_path / "eyes.zip", "w") as z:
        z.write(tmp_path / "l.png", "left/A.png")
        z.write(tmp_path / "r.png", "right/a.png")
    zip_path, _, rows = app.batch([str(tmp_path / "eyes.zip")], "DRIVE, fast")
    assert [(r["image"], r["mask"]) for r in rows] == [("left/A.png", "A.png"), ("right/a.png", "a_2.png")]
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(tmp_path / "out")
    assert np.array_equal(read_image(tmp_path / "out" / "A.png") > 0, seg.segment(left)[1])
    assert np.array_equal(read_image(tmp_path / "out" / "a_2.png") > 0, seg.segment(right)[1])


@pytest.mark.parametrize("content,message", [
    (b"%PDF-1.4 not an image", "not a readable image"),
    ("truncated", "not a readable image"),
    ("1x1", "too small to segment"),
])
def test_bad_uploads_are_one_line_messages(app, tmp_path, content, message):
    path = tmp_path / "upload.png"
    if content == "truncated":
        data = SAMPLE.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif content == "1x1":
        write_png(path, np.zeros((1, 1), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as exc:
        app.segment(str(path), "DRIVE, whole image")
    assert "\n" not in str(exc.value) and str(tmp_path) not in str(exc.value)  # the name the user knows


def test_annotation_of_another_size_and_no_fov(app, tmp_path):
    write_png(tmp_path / "label.png", np.zeros((100, 100), bool))
    with pytest.raises(UserError, match="must have the same size"):
        app.check(str(SAMPLE), str(tmp_path / "label.png"), None, "DRIVE, whole image")
    write_png(tmp_path / "flat.png", np.full((200, 240), 90, np.uint8))  # no visible field of view
    over, mask, *_ = app.segment(str(tmp_path / "flat.png"), "DRIVE, whole image")
    assert mask.shape == (200, 240)


# --------------------------------------------------------------------------- with a server

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    # the server's output goes to a file: a pipe nobody reads fills up (64 KB of request logs and
    # tracebacks of refused uploads) and then blocks the server in the middle of a later test
    log = tmp_path_factory.mktemp("server") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, REPO / "app.py", "--port", str(port), "--max-upload-mb", "5"],
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while f"open {url[:-1]}" not in log.read_text():
        if proc.poll() is not None or time.time() - t0 > 120:
            proc.kill()
            raise AssertionError(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield url, proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_api_four_users_at_once_each_get_their_own_result(server, tmp_path):
    from gradio_client import Client, handle_file

    url, proc = server
    images = []
    for i, (w, h) in enumerate([(565, 584), (400, 420), (300, 320), (500, 470)]):
        img = resize(read_image(SAMPLE), (w, h))
        write_png(tmp_path / f"u{i}.png", img)
        images.append(img)
    seg = Segmenter.from_file(REPO / "UNet.onnx")

    def user(i):
        client = Client(url, verbose=False)
        out = client.predict(handle_file(str(tmp_path / f"u{i}.png")), "DRIVE, whole image", seg.threshold, False,
                             api_name="/segment")
        return read_image(out[4])

    with ThreadPoolExecutor(4) as pool:
        masks = list(pool.map(user, range(4)))
    for img, mask in zip(images, masks):
        assert np.array_equal(mask > 0, seg.segment(img)[1])
    # a bad file is a message, and the server goes on serving
    client = Client(url, verbose=False)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(Exception, match="bad.png: not a readable image"):
        client.predict(handle_file(str(tmp_path / "bad.png")), "DRIVE, whole image", 0.5, False, api_name="/segment")
    out = client.predict(handle_file(str(tmp_path / "u2.png")), "DRIVE, whole image", seg.threshold, False,
                         api_name="/segment")
    assert np.array_equal(read_image(out[4]) > 0, masks[2] > 0) and proc.poll() is None


def test_api_parameters_have_names_and_the_fov_mask_is_optional(server, drive_src):
    from gradio_client import Client, handle_file

    url, _ = server
    client = Client(url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [(p["parameter_name"], p["parameter_has_default"]) for p in ep["parameters"]]
              for name, ep in api.items()}
    assert params["/segment"] == [("photograph", False), ("model", True), ("threshold", True), ("tta", True),
                                  ("bridge", True), ("specks", True), ("thin", True)]
    assert params["/check"] == [("photograph", False), ("annotation", False), ("fov_mask", True), ("model", True)]
    photo = drive_src / "test" / "images" / "01_test.tif"
    label = drive_src / "test" / "1st_manual" / "01_manual1.gif"
    table, _, lines, status = client.predict(photograph=handle_file(str(photo)), annotation=handle_file(str(label)),
                                             api_name="/check")  # no FOV mask: found in the photograph
    assert "| Matthews correlation |" in table and "| F1 (Dice) | 0.8" in table and "01_test.tif" in status
    assert "| clDice | 0.8" in table and "| centreline length error | -" in table and lines


def test_upload_size_is_limited(server, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = server
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(6 * 2**20))  # the test server allows 5 MB
    with pytest.raises(Exception, match="(?i)file.*(large|size|exceed)"):
        Client(url, verbose=False).predict(handle_file(str(big)), "DRIVE, whole image", 0.5, False, api_name="/segment")


def test_a_slow_first_answer_on_localhost_does_not_stop_the_app(monkeypatch):
    """Gradio gives its localhost self-check one 3 s try; on a busy computer the app retries it."""
    from gradio import networking

    import app as app_module

    answers = iter([False, False, True])
    monkeypatch.setattr(networking, "url_ok", lambda url: next(answers))
    app_module.patient_self_check(wait_s=5)
    assert networking.url_ok("http://127.0.0.1:1/") is True  # the third try answers
    app_module.patient_self_check(wait_s=5)  # a second call does not wrap it again
    monkeypatch.setattr(networking, "url_ok", lambda url: False)
    app_module.patient_self_check(wait_s=0.6)
    t0 = time.time()
    assert networking.url_ok("http://127.0.0.1:1/") is False and 0.5 < time.time() - t0 < 5  # then gives up


def test_other_host_prints_a_warning():
    port = free_port()
    proc = subprocess.Popen([sys.executable, REPO / "app.py", "--port", str(port), "--host", "0.0.0.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        err = proc.stderr.readline()
        assert "warning: listening on 0.0.0.0" in err and "anyone" in err
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- in a real browser

def chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing (apt-get install -y chromium): the browser test must run in CI")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    return CHROMIUM


@contextlib.contextmanager
def app_page(url, accept_downloads=False):
    """A headless Chromium page on the app, once it has mounted; the browser closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=accept_downloads)
            page.goto(url)
            page.locator("#segment").wait_for()  # the app has mounted
            yield page
        finally:
            browser.close()


def upload(page, where, path):
    """Drop a file on the upload area ``where`` and wait until the upload has finished: the area then
    links the uploaded file by its name. (Its name is shown as two pieces, stem and extension, so a
    text search for the whole name finds only the progress line shown while the file is on its way,
    which on a busy machine can come and go unseen.)"""
    page.locator(f"{where} input[type=file]").set_input_files(str(path))
    page.locator(where).locator(f'a[download="{Path(path).name}"]').wait_for(timeout=60000)


def test_in_a_browser_segment_download_and_how_it_works(server, reference, tmp_path):
    """Upload the sample, press Segment, download the mask: predict.py's result, pixel for pixel."""
    url, _ = server
    shots = os.environ.get("APP_SCREENSHOTS")  # a folder: save a screenshot of each tab there
    with app_page(url, accept_downloads=True) as page:
        upload(page, "#photo", SAMPLE)
        t0 = time.perf_counter()
        page.locator("#segment").click()
        link = page.locator("#mask_file a").first
        link.wait_for(timeout=60000)
        seconds = time.perf_counter() - t0
        print(f"Segment -> result in the browser: {seconds:.2f} s")
        with page.expect_download() as dl:
            link.click()
        dl.value.save_as(tmp_path / "mask.png")
        assert np.array_equal(read_image(tmp_path / "mask.png"), reference[0])
        page.locator("#measurements").get_by_text("centreline length").first.wait_for(timeout=60000)
        if shots:
            page.screenshot(path=f"{shots}/app_segment.png", full_page=True)
        page.get_by_role("tab", name="How it works").click()
        page.locator("#explain").click()
        page.get_by_text("each window histogram-equalized").first.wait_for(timeout=60000)
        for caption in ("3. resized to 512x512", "6. each window segmented", "8. field of view",
                        "2. CLAHE on the whole image", "5. cleared outside the field of view",
                        "2. where the wide vessels converge", "5. the centre: the circle", "6. the disc (radius"):
            assert page.get_by_text(caption).count() >= 1, caption
        if shots:  # every picture loaded before the picture of the page is taken
            page.mouse.wheel(0, 5000)
            page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                                   timeout=60000)
            page.mouse.wheel(0, -5000)
            page.screenshot(path=f"{shots}/app_how_it_works.png", full_page=True)


def test_in_a_browser_arteries_and_veins(server, tmp_path):
    """The A/V tab on the photograph uploaded in Segment: both pictures, the table with the AVR and the
    colour map to download."""
    url, _ = server
    shots = os.environ.get("APP_SCREENSHOTS")
    with app_page(url, accept_downloads=True) as page:
        upload(page, "#photo", SAMPLE)
        page.get_by_role("tab", name="Arteries and veins").click()
        page.locator("#av_go").click()
        link = page.locator("#av_file a").first
        link.wait_for(timeout=60000)
        assert page.locator("#av_table").get_by_text("AVR (CRAE / CRVE)").count() == 1
        assert page.locator("#av_map img").count() == 1 and page.locator("#av_zone img").count() == 1
        with page.expect_download() as dl:
            link.click()
        dl.value.save_as(tmp_path / "av.png")
        assert av.read_classes(read_image(tmp_path / "av.png")).max() == av.VEIN
        status = page.locator("#av_status")
        assert "flip" not in status.inner_text()
        # the flip ticked after the result: the page says the result is the old settings', then updates it
        page.locator("#av_tta input").check()
        status.get_by_text("The settings have changed").wait_for(timeout=10000)
        page.locator("#av_go").click()
        status.get_by_text("(flip averaged)").wait_for(timeout=60000)
        assert "settings have changed" not in status.inner_text()
        if shots:  # the two pictures loaded before the picture of the page is taken
            page.wait_for_function("() => [...document.querySelectorAll('#av_map img, #av_zone img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", timeout=60000)
            page.wait_for_timeout(1500)  # the pictures' fade-in after a run (a gray veil otherwise)
            page.screenshot(path=f"{shots}/app_arteries_veins.png", full_page=True)


def test_in_a_browser_check_shows_pixels_topology_and_the_centreline_map(server, drive_src):
    """Check tab: a DRIVE photograph with its annotation (the FOV found in the photograph) gives the
    metric table with the topology rows, the error map and the centreline map, in the page."""
    url, _ = server
    shots = os.environ.get("APP_SCREENSHOTS")
    with app_page(url) as page:
        page.get_by_role("tab", name="Check against an annotation").click()
        page.locator("#check_go").wait_for()  # the tab is shown before anything is dropped on it
        page.wait_for_timeout(500)
        upload(page, "#check_photo", drive_src / "test" / "images" / "01_test.tif")
        upload(page, "#check_label", drive_src / "test" / "1st_manual" / "01_manual1.gif")
        page.locator("#check_go").click()
        table = page.locator("#check_metrics")
        table.get_by_text("centreline length error").wait_for(timeout=90000)
        for name in ("F1 (Dice)", "clDice", "centreline recall", "Betti-0 error (components)"):
            assert table.get_by_text(name, exact=True).count() == 1, name
        # every row has its meaning in the third column (a "|" in a meaning would break the table)
        assert table.get_by_text("absolute difference in the number of loops", exact=False).count() == 1
        for where in ("#check_errors", "#check_centreline"):
            page.locator(f"{where} img").first.wait_for(timeout=30000)
        if shots:
            page.screenshot(path=f"{shots}/app_check.png", full_page=True)


def test_in_a_browser_a_batch_can_be_stopped_and_keeps_what_is_done(server, tmp_path):
    """Segment all, Stop part-way: the page offers a zip of exactly the photographs done; the next batch runs."""
    url, proc = server
    n = 40
    photos = []
    for i in range(n):
        photos.append(tmp_path / f"eye{i:02d}.png")
        photos[-1].write_bytes(SAMPLE.read_bytes())
    with app_page(url, accept_downloads=True) as page:
        page.get_by_role("tab", name="Batch").click()
        page.locator("#batch_files input[type=file]").set_input_files([str(p) for p in photos])
        page.locator("#batch_files").get_by_text("eye39").first.wait_for(timeout=60000)  # shown as "eye39" ".png"
        page.locator("#batch_go").click()
        status = page.locator("#batch_status")
        status.get_by_text(f"1 of {n} segmented").wait_for(timeout=60000)
        page.locator("#batch_stop").click()
        status.get_by_text(f"of {n} segmented.").wait_for(timeout=30000)  # "Stopped: K of 40 segmented."
        done = int(status.inner_text().split("Stopped:")[1].split()[0])
        assert 1 <= done < n
        link = page.locator("#batch_zip a").first
        with page.expect_download() as dl:
            link.click()
        dl.value.save_as(tmp_path / "stopped.zip")
        with zipfile.ZipFile(tmp_path / "stopped.zip") as z:
            masks = sorted(m for m in z.namelist() if m.endswith(".png") and not m.endswith("_prob.png"))
            table = list(csv.DictReader(z.read("results.csv").decode().splitlines()))
        assert masks == [f"eye{i:02d}.png" for i in range(done)] and len(table) == done
        if shots := os.environ.get("APP_SCREENSHOTS"):
            page.screenshot(path=f"{shots}/app_batch.png", full_page=True)
        page.locator("#batch_go").click()  # the server is free again: a whole batch runs to its end
        status.get_by_text(f"of {n} segmented ...").wait_for(timeout=60000)  # running (not "Stopped: ...")
        assert page.locator("#batch_zip a").count() == 0  # while it runs, no earlier batch's zip is offered
        status.get_by_text(f"All {n} segmented.").wait_for(timeout=120000)
        assert proc.poll() is None


def test_in_a_browser_a_new_request_clears_the_old_result_and_a_failure_says_why_until_the_next(server, tmp_path):
    """Segment the sample, then a truncated JPEG: none of the sample's results stays on the page, and the
    reason stays after the toast has gone. Moving the threshold after a result marks it as out of date."""
    from PIL import Image
    url, proc = server
    Image.open(SAMPLE).convert("RGB").save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with app_page(url) as page:
        status = page.locator("#segment_status")
        upload(page, "#photo", SAMPLE)
        page.locator("#preview img").wait_for(timeout=30000)  # the photograph is shown as soon as it is uploaded
        page.locator("#segment").click()
        page.locator("#measurements").get_by_text("centreline length").first.wait_for(timeout=60000)
        assert page.locator("#mask_file a").first.get_attribute("download") == "img_mask.png"
        assert "img.png: segmented with DRIVE, whole image, threshold 0.470" in status.inner_text()
        # thin vessels asked for after the result: marked; asked off again: the result is the settings' again
        page.locator("#thin input[type=number]").fill("0.05")
        page.locator("#thin input[type=number]").press("Enter")
        status.get_by_text("The settings have changed since this result").wait_for(timeout=10000)
        page.locator("#thin input[type=number]").fill("0")
        page.locator("#thin input[type=number]").press("Enter")
        status.get_by_text("The settings have changed since this result").wait_for(state="detached", timeout=10000)
        # the slider moved after the result: the page says the result is for other settings
        page.locator("#threshold input[type=number]").fill("0.3")
        page.locator("#threshold input[type=number]").press("Enter")
        status.get_by_text("The settings have changed since this result").wait_for(timeout=10000)
        assert "(model DRIVE, whole image, threshold 0.470): press Segment" in status.inner_text()
        # a truncated photograph: every earlier result is gone, the reason stays
        page.locator("#photo button[aria-label=Clear]").click()
        upload(page, "#photo", tmp_path / "cut.jpg")
        page.locator("#segment").click()
        status.get_by_text("Could not segment cut.jpg:").wait_for(timeout=60000)
        time.sleep(11)  # Gradio's error toast is gone by now
        assert "the file is cut short or damaged" in status.inner_text()
        for shown in ("#overlay img", "#mask img", "#mask_file a", "#calibre_overlay img"):
            assert page.locator(shown).count() == 0, shown
        # (Gradio marks the outputs of a failed request "Error"; none may show the sample's figures)
        assert "centreline length" not in page.locator("#measurements").inner_text()
        assert "565 x 584" not in page.locator("#figures").inner_text()
        assert proc.poll() is None


def test_segment_tells_its_stages_as_they_start(app):
    stages = []
    app.segment(str(SAMPLE), "DRIVE, whole image", progress=lambda f, d: stages.append((f, d)))
    assert [d.split(" (")[0] for _, d in stages] == ["reading the photograph", "segmenting",
                                                     "writing the mask and the probability map"]
    assert [f for f, _ in stages] == sorted(f for f, _ in stages) and "565x584 px" in stages[1][1]


def test_in_a_browser_the_measuring_setting_sets_the_tree_threshold(server):
    """The button moves the threshold to the model's stored tree threshold and says what it is; a model
    without one says so and leaves the threshold alone."""
    from unet import read_checkpoint
    url, _ = server
    tree = read_checkpoint(REPO / "UNet.pth")["tree"]
    with app_page(url) as page:
        page.locator("#tree_setting").click()
        note = page.locator("#tree_note")
        note.get_by_text(f"Threshold {tree['threshold']:.3f}").wait_for(timeout=15000)
        assert f"on {len(tree['images'])} photographs" in note.inner_text()
        value = float(page.locator("#threshold input[type=number]").input_value())
        assert value == pytest.approx(tree["threshold"], abs=1e-3)
        assert page.locator("#bridge input[type=checkbox]").is_checked() == tree["bridge"]
        thin = float(page.locator("#thin input[type=number]").input_value())
        assert thin == pytest.approx(tree.get("thin", 0.0), abs=1e-3)
        page.locator("#model input").click()
        page.get_by_role("option", name="DRIVE, fast").click()
        page.locator("#threshold input[type=number]").wait_for()
        page.wait_for_function("() => Math.abs(parseFloat(document.querySelector('#threshold input[type=number]').value)"
                               f" - {tree['threshold']}) > 0.01", timeout=15000)  # the fast model's own threshold
        moved = page.locator("#threshold input[type=number]").input_value()
        page.locator("#tree_setting").click()
        note.get_by_text("has no measuring setting").wait_for(timeout=15000)
        assert page.locator("#threshold input[type=number]").input_value() == moved
