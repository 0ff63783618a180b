"""The optic disc locator (disc.py) on synthetic photographs with known answers, and on real ones."""
import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import disc as D
from conftest import need


def fundus(size=560, disc_at=(130, 280), disc_r=38, second=None, vessels=True, noise=4.0, seed=0):
    """A synthetic photograph: an orange FOV (radius 0.45 size) darker to its rim, a bright disc at
    ``disc_at`` (x, y) with dark vessels radiating from it; returns (image, vessel mask, FOV)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = size / 2
    rim = np.hypot(yy - c, xx - c) / (0.45 * size)
    fov = rim <= 1
    shade = 1 - 0.25 * rim ** 2
    img = np.zeros((size, size, 3), np.float32)
    for k, v in enumerate((150, 80, 40)):
        img[..., k] = v * shade
    vessel = np.zeros((size, size), np.uint8)
    for x, y in [disc_at] + ([second] if second else []):
        d = np.hypot(yy - y, xx - x)
        glow = np.clip((disc_r - d) / 4 + 0.5, 0, 1)  # a disc with a soft 4 px edge
        for k, v in enumerate((95, 110, 75)):
            img[..., k] += v * glow
        if vessels:
            for a in np.linspace(0, 2 * np.pi, 9, endpoint=False) + 0.2:
                end = (int(x + 0.6 * size * np.cos(a)), int(y + 0.6 * size * np.sin(a)))
                cv2.line(vessel, (int(x), int(y)), end, 1, 7)
    vessel = vessel.astype(bool) & fov
    img[vessel] *= 0.6
    img += rng.normal(0, noise, img.shape)
    img[~fov] = 0
    return np.clip(img, 0, 255).astype(np.uint8), vessel, fov


def test_a_disc_on_the_left_of_a_macula_centred_photograph_is_a_left_eye():
    image, vessels, fov = fundus()
    d = D.find_disc(image, vessels, fov)
    assert d["disc_found"] and d["disc_confidence"] >= D.MIN_CONFIDENCE
    assert np.hypot(d["disc_x_px"] - 130, d["disc_y_px"] - 280) <= 0.25 * 38
    assert d["disc_radius_px"] == pytest.approx(38, rel=0.2)
    assert (d["laterality"], d["field"]) == ("left (OS)", "macula-centred")


def test_mirrored_it_is_a_right_eye_at_the_mirrored_place():
    image, vessels, fov = fundus()
    d = D.find_disc(image[:, ::-1].copy(), vessels[:, ::-1].copy(), fov[:, ::-1].copy())
    assert np.hypot(d["disc_x_px"] - (559 - 130), d["disc_y_px"] - 280) <= 0.25 * 38
    assert (d["laterality"], d["field"]) == ("right (OD)", "macula-centred")


def test_a_disc_centred_photograph_has_no_side():
    image, vessels, fov = fundus(disc_at=(290, 270))
    d = D.find_disc(image, vessels, fov)
    assert d["disc_found"] and d["field"] == "disc-centred" and d["laterality"] == "unknown"
    assert "disc-centred" in d["disc_note"]


def test_the_same_photograph_twice_as_large_gives_twice_the_pixels():
    image, vessels, fov = fundus()
    a = D.find_disc(image, vessels, fov)
    big = cv2.resize(image, (1120, 1120), interpolation=cv2.INTER_LINEAR)
    b = D.find_disc(big, np.kron(vessels, np.ones((2, 2), bool)), np.kron(fov, np.ones((2, 2), bool)))
    assert b["disc_x_px"] == pytest.approx(2 * a["disc_x_px"], abs=6)
    assert b["disc_radius_px"] == pytest.approx(2 * a["disc_radius_px"], rel=0.1)


def paler_temporally(vessels, nasal=0.1):
    """fundus() with the disc's brightness falling linearly from its temporal edge (towards the macula,
    the right) to ``nasal`` of it at its nasal edge, as a pale temporal cup makes it."""
    image, vv, fov = fundus(vessels=vessels, noise=0)
    base, _, _ = fundus(disc_r=0, vessels=vessels, noise=0)
    xx = np.mgrid[:560, :560][1]
    ramp = np.clip(nasal + (1 - nasal) * ((xx - 130) / 38 + 1) / 2, nasal, 1)
    image = base + (image.astype(np.float32) - base) * ramp[..., None]
    image += np.random.default_rng(0).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), vv, fov


@pytest.mark.parametrize("vessels", [True, False])
def test_a_disc_paler_on_its_temporal_side_is_centred_on_the_whole_disc(vessels):
    """The centre is the fitted circle's, not the bright part's centroid (with vessels: 0.20 radius off
    before the fit), and without vessels it is not pulled towards an arbitrary 'trunk' (0.47 before)."""
    image, vv, fov = paler_temporally(vessels)
    d = D.find_disc(image, vv, fov, "classical")
    assert d["disc_found"]
    assert np.hypot(d["disc_x_px"] - 130, d["disc_y_px"] - 280) <= 0.12 * 38


def test_the_circle_fit_peaks_at_a_discs_centre_and_needs_half_the_circle_in_the_fov():
    img = np.full((120, 140), 10, np.float32)
    yy, xx = np.mgrid[:120, :140]
    img[np.hypot(yy - 55, xx - 60) <= 20] = 100
    img[np.hypot(yy - 55, xx - 70) <= 8] = 200  # a bright cup off the centre
    core = np.ones_like(img, bool)
    core[:, 120:] = False
    fit = D._circle_fit(img, core, 20)
    assert np.unravel_index(np.nanargmax(fit), fit.shape) == (55, 60)
    assert np.isnan(fit[55, 125]) and np.isfinite(fit[55, 115])  # centre outside: less than half inside
    vessel = np.zeros_like(core)
    vessel[:, 58:61] = True  # a dark vessel across the disc, painted out from its sides
    painted = D._without_vessels(np.where(vessel, 20, img).astype(np.float32), vessel)
    assert abs(float(painted[45, 59]) - 100) < 15


@pytest.mark.parametrize("case", ["no disc", "two equal discs", "blank", "no FOV"])
def test_no_clear_disc_is_not_found_and_says_why(case):
    if case == "no disc":
        image, vessels, fov = fundus(disc_r=0, vessels=False)
    elif case == "two equal discs":
        image, vessels, fov = fundus(disc_at=(140, 280), second=(420, 280))
    else:
        image, vessels, fov = np.full((300, 320, 3), 120, np.uint8), np.zeros((300, 320), bool), np.ones((300, 320), bool)
        if case == "no FOV":
            fov = np.zeros_like(fov)
    d = D.find_disc(image, vessels, fov)
    assert d["disc_found"] is False and d["laterality"] == "unknown" and d["disc_note"]


def test_real_photographs_drive_test_and_drions_held_out():
    """Four DRIVE test photographs (disc circles from DRIVE_disc.csv) and four held-out DRIONS-DB ones
    (expert outlines), through the shipped vessel model: the centre within one disc radius."""
    from imio import read_image, read_mask
    from inference import Segmenter
    from preprocess import estimate_fov

    drive, drions = need("DRIVE"), need("DISC/DRIONS-DB")
    with open(need("DISC/DRIVE_disc.csv")) as f:
        circles = {r["image"]: r for r in csv.DictReader(f)}
    seg = Segmenter.from_file(Path(__file__).resolve().parents[1] / "UNet.onnx")
    cases = []
    for n in ("02", "07", "13", "19"):
        r = circles[f"{n}_test.tif"]
        cases.append((drive / "test" / "images" / f"{n}_test.tif", read_mask(drive / "test" / "mask" / f"{n}_test_mask.gif"),
                      float(r["centre_x"]), float(r["centre_y"]), float(r["radius"])))
    for n in ("070", "085", "099", "110"):
        label = read_image(drions / "label" / f"image_{n}.jpg") >= 128
        ys, xs = np.nonzero(label)
        cases.append((drions / "image" / f"image_{n}.jpg", None, xs.mean(), ys.mean(), np.sqrt(label.sum() / np.pi)))
    for photo, fov, x, y, radius in cases:
        image = read_image(photo)
        fov = estimate_fov(image) if fov is None else fov
        d = D.find_disc(image, seg.segment(image)[1], fov)
        assert d["disc_found"], photo.name
        assert np.hypot(d["disc_x_px"] - x, d["disc_y_px"] - y) <= radius, photo.name
        assert 0.5 < d["disc_radius_px"] / radius < 1.5, photo.name


def test_predict_disc_writes_a_table_of_every_image_without_torch(tmp_path):
    """predict.py --disc: the sample and its mirror image -> disc.csv, a left and a right eye."""
    import subprocess
    import sys

    from conftest import REPO
    from imio import read_image, write_png

    photos = tmp_path / "photos"
    image = read_image(REPO / "predict" / "img.png")
    write_png(photos / "a.png", image)
    write_png(photos / "b.png", image[:, ::-1].copy())
    code = ("import sys, runpy; sys.argv = ['predict.py'] + sys.argv[1:]; runpy.run_path('predict.py', "
            "run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code + "; assert 'torch' not in sys.modules", "--input", photos,
                        "--output", tmp_path / "out", "--disc"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "found the disc in 2 of 2 image(s)" in r.stdout
    with open(tmp_path / "out" / "disc.csv", newline="") as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    assert rows["a"]["laterality"] == "left (OS)" and rows["b"]["laterality"] == "right (OD)"
    assert float(rows["a"]["disc_x_px"]) + float(rows["b"]["disc_x_px"]) == pytest.approx(564, abs=4)


def test_prepare_data_lays_out_the_disc_references_for_train_py(tmp_path):
    """prepare_data.py --dataset DISC: DRIVE's split and circles, DRIONS-DB 001-060 / 061-110 outlines."""
    import subprocess
    import sys

    from scipy import ndimage as ndi

    from conftest import REPO
    from imio import read_mask

    src = need("DISC")
    need("DRIVE")
    r = subprocess.run([sys.executable, REPO / "prepare_data.py", "--dataset", "DISC", "--source", src, "--root",
                        tmp_path], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "80 training and 69 test images" in r.stdout
    with open(src / "DRIVE_disc.csv", newline="") as f:
        circle = next(row for row in csv.DictReader(f) if row["image"] == "21_training.tif")
    label = read_mask(tmp_path / "DISC" / "train" / "label" / "drive_21.png")
    assert label.sum() == pytest.approx(np.pi * float(circle["radius"]) ** 2, rel=0.03)
    ys, xs = np.nonzero(label)
    assert (xs.mean(), ys.mean()) == pytest.approx((float(circle["centre_x"]), float(circle["centre_y"])), abs=0.5)
    outline = read_mask(tmp_path / "DISC" / "test" / "label" / "drions_070.png")
    assert ndi.label(outline)[1] == 1 and 0.005 < outline.mean() < 0.1  # one disc, no JPEG speckle
    assert not (tmp_path / "DISC" / "train" / "label" / "drions_061.png").exists()


class FakeSegmenter:
    """A disc model's output, made up: the probability map it returns and its threshold."""

    def __init__(self, prob, threshold=0.5):
        self.prob, self.threshold = prob, threshold

    def probability(self, image, fov=None):
        return self.prob


@pytest.mark.parametrize("blobs,found", [([(130, 280, 38, 0.95)], True),
                                         ([(130, 280, 38, 0.95), (430, 280, 38, 0.95)], False),
                                         ([(130, 280, 38, 0.95), (430, 280, 10, 0.7)], True),
                                         ([], False)])
def test_a_disc_network_output_becomes_a_centre_a_radius_and_a_confidence(blobs, found):
    """DiscNet: the region above the threshold holding the most probability is the disc; two equal
    candidates share the confidence (0.5 at most) and the disc is not found."""
    image, _, fov = fundus()
    yy, xx = np.mgrid[:560, :560]
    prob = np.zeros((560, 560), np.float32)
    for x, y, r, p in blobs:
        prob[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = p
    d = D.DiscNet(FakeSegmenter(prob)).find(image, fov)
    assert d["disc_found"] is found
    if blobs:
        assert np.hypot(d["disc_x_px"] - 130, d["disc_y_px"] - 280) <= 1 or not found
        assert d["disc_radius_px"] == pytest.approx(38, rel=0.05) or not found
    if found:
        assert d["laterality"] == "left (OS)" and d["disc_confidence"] >= D.NET_MIN_CONFIDENCE
    else:
        assert d["disc_note"]
