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


def counts(artery_tp, artery_fn, found=(10, 10)):
    """One photograph's av_counts: arteries as given (no false positives), veins and vessels perfect."""
    return {"artery": np.array([artery_tp, 0, artery_fn, 1000]), "vein": np.array([100, 0, 0, 1000]),
            "vessel": np.array([200, 0, 0, 1000]), "found": np.array(found), "centreline": np.array(found)}


def test_the_interval_over_photographs_is_a_bootstrap_of_the_pooled_scores():
    same = av.av_interval([counts(60, 40)] * 6)  # alike photographs: no spread, the one value
    f1 = 2 * 60 / (2 * 60 + 40)
    assert same["artery_f1"] == pytest.approx((f1, f1)) and same["vein_f1"] == pytest.approx((1.0, 1.0))
    mixed = [counts(100, 0)] * 5 + [counts(0, 100)] * 5  # half found every artery, half none
    pooled = av.av_scores({k: sum(c[k] for c in mixed) for k in mixed[0]})["artery_f1"]  # 2/3
    low, high = av.av_interval(mixed)["artery_f1"]
    assert 0.3 < low < pooled - 0.1 and pooled + 0.05 < high < 0.95  # resampling the 10 photographs
    assert av.av_interval(mixed, seed=1)["artery_f1"] == pytest.approx((low, high), abs=0.05)  # not one draw's
    assert av.av_interval([counts(1, 1, found=(0, 0))] * 3)["accuracy_found"] is None  # nothing found: no score
    assert av.av_interval([counts(60, 40)]) == dict.fromkeys(av.INTERVAL_KEYS)  # one photograph: no interval


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
    assert value is None and "5 vein vessel(s)" in note and "needs 6" in note
    assert av.avr(None, 10.0) is None


def bar(img, value, angle, width, r0=40, r1=140, start=(200, 200)):
    """A straight vessel ``width`` px wide (the pixels whose centres lie within width / 2 of its axis)
    from ``r0`` to ``r1`` px away from ``start`` (x, y) along ``angle`` (degrees)."""
    a = math.radians(angle)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    along = (xx - start[0]) * math.cos(a) + (yy - start[1]) * math.sin(a)
    across = -(xx - start[0]) * math.sin(a) + (yy - start[1]) * math.cos(a)
    img[(along >= r0) & (along <= r1) & (np.abs(across) <= width / 2)] = value


DISC = {"disc_found": True, "disc_x_px": 200.0, "disc_y_px": 200.0, "disc_radius_px": 30.0}


def radial_map(artery_widths, vein_widths):
    classes = np.zeros((400, 400), np.uint8)
    for i, w in enumerate(artery_widths):
        bar(classes, av.ARTERY, 30 * i, w)
    for i, w in enumerate(vein_widths):
        bar(classes, av.VEIN, 30 * i + 15, w)
    return classes, np.ones_like(classes, bool)


def test_crae_crve_and_avr_of_vessels_of_known_width_crossing_zone_b():
    arteries, veins = [4, 5, 6, 7, 8, 9, 3], [6, 7, 8, 9, 10, 11]
    classes, fov = radial_map(arteries, veins)
    row = av.measure_av(classes, fov, DISC, um_per_px=10.0)
    assert row["n_arteries_zoneB"] == 7 and row["n_veins_zoneB"] == 6 and row["av_note"] == ""
    assert row["crae_px"] == pytest.approx(av.knudtson(arteries, "artery")[0], rel=0.05)
    assert row["crve_px"] == pytest.approx(av.knudtson(veins, "vein")[0], rel=0.05)
    assert row["crae_um"] == pytest.approx(10 * row["crae_px"])
    assert row["avr"] == pytest.approx(row["crae_px"] / row["crve_px"]) and 0.5 < row["avr"] < 1


def test_a_vessel_branching_in_zone_b_counts_once_with_its_trunk_and_uncertain_pixels_are_no_class():
    classes, fov = radial_map([], [])
    bar(classes, av.ARTERY, 0, 9, r1=72)  # a trunk of 9 px into zone B (60-90 px) ...
    bar(classes, av.ARTERY, 25, 5, r0=0, r1=60, start=(270, 200))  # ... splitting into two of 5 px
    bar(classes, av.ARTERY, -25, 5, r0=0, r1=60, start=(270, 200))
    bar(classes, av.UNCERTAIN, 90, 12)  # not an artery or a vein: not counted
    bar(classes, av.VEIN, 180, 8, r0=95)  # beyond zone B (in zone C): not counted
    widths = av.zone_b_widths(classes == av.ARTERY, fov, DISC)
    assert len(widths) == 1 and widths[0] == pytest.approx(9, abs=1)
    row = av.measure_av(classes, fov, DISC)
    assert row["crae_px"] is None and "1 artery vessel(s)" in row["av_note"] and row["n_veins_zoneB"] == 0
    assert row["avr"] is None


def test_the_vessels_crae_and_crve_use_and_whether_a_reference_gives_them_the_same_kind():
    arteries, veins = [4, 5, 6, 7, 8, 9, 3], [6, 7, 8, 9, 10, 11]
    classes, fov = radial_map(arteries, veins)
    used = av.knudtson_vessels(classes, fov, DISC)
    assert [int(used[k].max()) for k in (av.ARTERY, av.VEIN)] == [6, 6]
    narrowest, widest = np.zeros_like(fov), np.zeros_like(fov)
    bar(narrowest, True, 30 * 6, 3)
    bar(widest, True, 30 * 5, 9)
    assert not (used[av.ARTERY] > 0)[narrowest].any()  # the 3 px artery is not used
    assert (used[av.ARTERY] == 1)[widest].any() and not (used[av.ARTERY] == 1)[~widest].any()  # the 9 px one first
    assert (classes[used[av.ARTERY] > 0] == av.ARTERY).all() and (classes[used[av.VEIN] > 0] == av.VEIN).all()
    assert av.knudtson_kind_agreement(classes, classes, fov, DISC) == {"artery": (6, 0, 0), "vein": (6, 0, 0)}
    reference = classes.copy()
    reference[widest] = av.VEIN  # the annotator calls the widest artery a vein,
    bar(reference, av.UNCERTAIN, 30 * 5 + 15, 11)  # cannot tell the widest vein,
    bar(reference, av.ARTERY, 30 * 4 + 15, 10, r0=60, r1=70)  # and calls a third of the next one an artery
    assert av.knudtson_kind_agreement(classes, reference, fov, DISC) == {"artery": (5, 1, 0), "vein": (5, 0, 1)}


def test_without_a_disc_there_is_no_zone_b_and_no_number():
    classes, fov = radial_map([5] * 6, [8] * 6)
    row = av.measure_av(classes, fov, {"disc_found": False, "disc_note": "no clear disc"})
    assert row["crae_px"] is None and row["crve_px"] is None and "no clear disc" in row["av_note"]


def test_measure_py_reports_crae_crve_and_avr_from_an_artery_vein_map(tmp_path):
    """measure.py --av on a DRIVE-AV test photograph with its manual labels (the mask is their union):
    the disc found in the photograph, CRAE < CRVE; an A/V file with other values: that image's row
    says why, and the others are measured."""
    import csv

    import measure
    from conftest import need
    from imio import read_image, write_png

    src = need("AV/DRIVE_AV") / "test"
    for n in ("01", "02"):
        classes = read_image(src / "1st_manual" / f"{n}_test.png")
        write_png(tmp_path / "masks" / f"{n}_test.png", classes > 0)
        write_png(tmp_path / "av" / f"{n}_test_av.png", classes)
    bad = read_image(src / "1st_manual" / "02_test.png").copy()
    bad[0, 0] = 7
    write_png(tmp_path / "av" / "02_test_av.png", bad)
    measure.main(["--input", str(tmp_path / "masks"), "--photos", str(src / "images"), "--av", str(tmp_path / "av"),
                  "--fov", str(src / "mask"), "--workers", "1", "--output", str(tmp_path / "out" / "m.csv")])
    rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "out" / "m.csv"))}
    good = rows["01_test"]
    assert good["disc_found"] == "True" and int(good["n_arteries_zoneB"]) >= 6 and int(good["n_veins_zoneB"]) >= 6
    assert 3 < float(good["crae_px"]) < float(good["crve_px"]) < 25 and 0.4 < float(good["avr"]) < 1
    # each kind measured alone: lengths and areas that add up (the uncertain pixels belong to neither)
    a, v, both = (float(good[f"{p}vessel_area_density"]) for p in ("artery_", "vein_", ""))
    classes = read_image(src / "1st_manual" / "01_test.png")
    fov = read_image(src / "mask" / "01_test_mask.gif") > 0
    assert a == pytest.approx(((classes == 1) & fov).sum() / fov.sum(), rel=1e-4) and a + v < both
    assert float(good["vein_calibre_weighted_px"]) > float(good["artery_calibre_weighted_px"])
    assert float(good["artery_centreline_length_px"]) < float(good["centreline_length_px"])
    assert rows["02_test"]["status"] == "failed" and "not an artery/vein label" in rows["02_test"]["note"]
