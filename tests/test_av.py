"""av.py: the artery/vein label layout, A/V scoring and Knudtson's summary calibres, on small synthetic
maps with answers worked out by hand."""
import math

import numpy as np
import pytest

import av


def maps():
    """A 6x8 FOV with an artery (row 1), a vein (row 4) and an uncertain crossing pixel; the prediction
    gets most right, swaps part of the vein, misses one artery pixel and adds a false artery pixel."""
    label = np.zeros((6, 8), np.uint8)
    label[1, 1:7] = av.ARTERY
    label[4, 1:7] = av.VEIN
    label[1, 7] = av.UNCERTAIN
    pred = np.zeros_like(label)
    pred[1, 1:6] = av.ARTERY  # (1, 6) missed
    pred[4, 1:5] = av.VEIN
    pred[4, 5:7] = av.ARTERY  # two vein pixels called artery
    pred[1, 7] = av.VEIN  # the uncertain pixel: neither right nor wrong as a class, vessel all the same
    pred[2, 3] = av.ARTERY  # a false artery pixel
    return label, pred, np.ones_like(label, bool)


def test_classes_are_scored_on_the_fov_without_the_uncertain_pixels():
    s = av.av_scores(av.av_counts(*maps()))
    # artery: tp 5, fp 1 (2,3) + 2 (vein pixels) = 3, fn 1 -> F1 10 / 14; scored pixels 48 - 1 uncertain
    assert s["artery_f1"] == pytest.approx(10 / 14)
    assert s["artery_sensitivity"] == pytest.approx(5 / 6)
    assert s["artery_specificity"] == pytest.approx((47 - 6 - 3) / (47 - 6))
    # vein: tp 4, fp 0 (the uncertain pixel is not scored), fn 2 -> F1 8 / 10
    assert s["vein_f1"] == pytest.approx(0.8) and s["vein_specificity"] == 1.0
    # vessel union, uncertain included: label 13 px, prediction 13 px, 12 shared -> 24 / 26
    assert s["vessel_f1"] == pytest.approx(24 / 26)
    # of the 11 annotated artery/vein pixels found, 9 have the right class
    assert s["accuracy_found"] == pytest.approx(9 / 11)


def test_pixels_outside_the_fov_do_not_count_and_counts_pool_over_images():
    label, pred, fov = maps()
    fov[4, :] = False  # the vein row leaves the FOV
    s = av.av_scores(av.av_counts(label, pred, fov))
    assert s["vein_f1"] == 0.0 and s["vein_sensitivity"] == 0.0  # no vein inside: tp = 0
    assert s["accuracy_found"] == 1.0
    one = av.av_counts(*maps())
    both = av.add_counts(av.add_counts(None, one), one)
    assert av.av_scores(both)["artery_f1"] == pytest.approx(10 / 14)
    assert both["artery"].tolist() == [2 * v for v in one["artery"].tolist()]


def test_centreline_accuracy_counts_each_vessel_by_its_centre_not_its_width():
    label = np.zeros((20, 30), np.uint8)
    label[2:11, 2:28] = av.VEIN  # a wide vein (9 px) ...
    label[15, 2:28] = av.ARTERY  # ... and a thin artery (1 px)
    pred = label.copy()
    pred[15, 2:28] = av.VEIN  # the artery called vein
    s = av.av_scores(av.av_counts(label, pred, np.ones_like(label, bool)))
    assert s["accuracy_found"] == pytest.approx(9 * 26 / (10 * 26))  # by pixels: 90 % right
    assert 0.4 < s["accuracy_centreline"] < 0.6  # by centreline: one vessel of two


def test_nothing_found_gives_no_accuracy_rather_than_a_number():
    label, _, fov = maps()
    s = av.av_scores(av.av_counts(label, np.zeros_like(label), fov))
    assert s["accuracy_found"] is None and s["artery_f1"] == 0.0


@pytest.mark.parametrize("bad", [np.full((4, 4), 5, np.uint8), np.zeros((4, 4, 3), np.uint8)])
def test_a_file_that_is_not_an_av_label_is_refused_with_its_values(bad):
    with pytest.raises(av.AVLabelError, match="not an artery/vein label"):
        av.check_av_label(bad, "x.png")


def test_knudtson_pairs_widest_with_narrowest_and_carries_the_middle():
    w = [10, 12, 14, 16, 18, 20, 5]  # seven: the six widest are used, 5 is dropped
    r1 = [0.88 * math.sqrt(20 ** 2 + 10 ** 2), 0.88 * math.sqrt(18 ** 2 + 12 ** 2), 0.88 * math.sqrt(16 ** 2 + 14 ** 2)]
    r1.sort(reverse=True)
    r2 = [0.88 * math.sqrt(r1[0] ** 2 + r1[2] ** 2), r1[1]]  # the middle one carried
    crae, note = av.knudtson(w, "artery")
    assert crae == pytest.approx(0.88 * math.sqrt(r2[0] ** 2 + r2[1] ** 2)) and note == ""
    crve, _ = av.knudtson([10] * 6, "vein")  # six equal: 0.95 sqrt2 each round, the carried one once less
    a = 0.95 * math.sqrt(2) * 10
    assert crve == pytest.approx(0.95 * math.sqrt((0.95 * math.sqrt(2) * a) ** 2 + a ** 2))
    assert av.avr(crae, crve) == pytest.approx(crae / crve)


def test_knudtson_with_fewer_than_six_vessels_gives_no_value_and_says_why():
    value, note = av.knudtson([10, 12, None, 14, float("nan"), 9, 11], "vein")
    assert value is None and "5 vein segments" in note and "needs 6" in note
    assert av.avr(None, 10.0) is None
