"""Benchmark metrics: inside the FOV only, pixels pooled, known confusion matrices give known numbers."""
import numpy as np
import pytest

from dataset import Sample
from evaluate import ORDER, evaluate
from metrics import all_metrics, best_threshold, binary_metrics, confusion, counts_metrics, pooled, vessel_interval


def test_known_confusion_matrix_gives_known_numbers():
    # tp=3, fp=1, fn=2, tn=4
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0], bool)
    m = binary_metrics(y, pred)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["iou"] == pytest.approx(3 / 6)
    assert m["mcc"] == pytest.approx((3 * 4 - 1 * 2) / np.sqrt(4 * 5 * 5 * 6))
    assert binary_metrics(y, ~y)["mcc"] == pytest.approx(-1.0)


def _fov_case(seed=0):
    rng = np.random.default_rng(seed)
    h, w = 40, 50
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - 20) ** 2 + (xx - 25) ** 2 < 18 ** 2
    label = (rng.random((h, w)) < 0.15) & fov
    prob = np.clip(label * 0.6 + rng.random((h, w)) * 0.5, 0, 1).astype(np.float32)
    return label, prob, fov


def test_garbage_outside_the_fov_changes_nothing():
    samples, clean, dirty = [], [], []
    for seed in range(3):
        label, prob, fov = _fov_case(seed)
        garbage_label = label | (~fov & (np.random.default_rng(seed + 9).random(label.shape) < 0.5))
        samples.append((label, garbage_label, fov))
        clean.append(prob)
        noisy = prob.copy()
        noisy[~fov] = np.random.default_rng(seed + 5).random(int((~fov).sum()))
        dirty.append(noisy)
    s_clean = [Sample(f"{i}", None, lab, fov) for i, (lab, _, fov) in enumerate(samples)]
    s_dirty = [Sample(f"{i}", None, g, fov) for i, (_, g, fov) in enumerate(samples)]
    a, rows_a, _ = evaluate(s_clean, clean, 0.5)
    b, rows_b, _ = evaluate(s_dirty, dirty, 0.5)
    assert a == b and rows_a == rows_b
    # and the pooled figures are those of the FOV pixels alone, concatenated
    y = np.concatenate([lab[fov] for lab, _, fov in samples])
    p = np.concatenate([pr[fov] for (_, _, fov), pr in zip(samples, clean)])
    assert {k: a[k] for k in ORDER} == all_metrics(y, p, 0.5)
    yp, pp = pooled([(g, pr, fov) for (_, g, fov), pr in zip(samples, dirty)])
    assert np.array_equal(yp, y) and np.array_equal(pp, p)


def test_pixels_are_pooled_not_averaged_per_image():
    # image 1: tiny FOV, all wrong; image 2: large FOV, all right -> pooled F1 is dominated by image 2
    l1 = np.array([[1, 0]], bool); p1 = np.array([[0.0, 1.0]], np.float32); f1 = np.ones((1, 2), bool)
    l2 = np.tile([True, False], (1, 50)); p2 = l2.astype(np.float32); f2 = np.ones_like(l2)
    m, rows, _ = evaluate([Sample("a", None, l1, f1), Sample("b", None, l2, f2)], [p1, p2], 0.5)
    assert m["f1"] == pytest.approx(2 * 50 / (2 * 50 + 1 + 1))
    assert rows[0]["f1"] == 0 and rows[1]["f1"] == 1


def test_best_threshold_is_the_f1_optimum():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1], bool)
    p = np.array([0.1, 0.2, 0.25, 0.3, 0.4, 0.8, 0.35, 0.9])
    t, f1 = best_threshold(y, p)
    brute = max((binary_metrics(y, p >= c)["f1"], c) for c in np.unique(p))
    assert f1 == pytest.approx(brute[0]) and t == pytest.approx(brute[1])
    assert t == pytest.approx(0.3)


def test_degenerate_and_one_pixel_cases():
    """Empty classes and single pixels: no division by zero, no 2x2 matrix assumed, exact values."""
    none = np.zeros(5, bool)
    m = binary_metrics(none, none)  # no vessel anywhere, none predicted
    assert m == {"f1": 0.0, "accuracy": 1.0, "sensitivity": 0.0, "specificity": 1.0, "mcc": 0.0, "iou": 0.0}
    one = np.array([True])
    m = binary_metrics(one, one)  # one vessel pixel, found
    assert m["accuracy"] == 1.0 and m["sensitivity"] == 1.0 and m["iou"] == 1.0 and m["f1"] == 1.0
    assert binary_metrics(~one, ~one)["specificity"] == 1.0
    m = binary_metrics(np.array([True, False]), np.array([True, False]))  # denominator of MCC exactly 1
    assert m["mcc"] == 1.0


def test_a_probability_equal_to_the_threshold_is_a_vessel():
    """The same rule as the Segmenter's mask (prob >= threshold), so evaluate.py scores what predict.py writes."""
    y = np.array([True, False, True])
    p = np.array([0.5, 0.2, 0.9])
    assert all_metrics(y, p, 0.5)["sensitivity"] == 1.0


def test_best_threshold_can_be_the_highest_score():
    y = np.array([True, False, False])
    p = np.array([0.9, 0.2, 0.1])
    t, f1 = best_threshold(y, p)
    assert t == pytest.approx(0.9) and f1 == pytest.approx(1.0)


def test_the_confusion_counts_give_the_metrics_of_the_pixels():
    rng = np.random.default_rng(3)
    y, pred = rng.random(500) < 0.2, rng.random(500) < 0.25
    c = confusion(y, pred)
    assert c == [int((y & pred).sum()), int((~y & pred).sum()), int((y & ~pred).sum()), int((~y & ~pred).sum())]
    assert counts_metrics(*c) == pytest.approx(binary_metrics(y, pred))


def test_the_vessel_interval_is_a_bootstrap_of_the_images_pooled_again():
    """Alike images: the one pooled value; half found / half missed: a wide interval round the pooled
    F1 (2/3), the same for another seed; one image: none."""
    alike = [{"confusion": [60, 20, 40, 880]}] * 6
    f1 = counts_metrics(60, 20, 40, 880)["f1"]
    assert vessel_interval(alike)["f1"] == pytest.approx((f1, f1))
    mixed = [{"confusion": [50, 0, 0, 950]}] * 5 + [{"confusion": [0, 0, 50, 950]}] * 5
    low, high = vessel_interval(mixed)["f1"]
    assert low < 0.55 and 0.78 < high and low < 2 / 3 < high  # pooled: 2 * 250 / (500 + 250)
    assert vessel_interval(mixed, seed=1)["f1"] == pytest.approx((low, high), abs=0.05)
    lo_s, hi_s = vessel_interval(mixed)["sensitivity"]
    assert lo_s < 0.4 and hi_s > 0.6  # half the vessel pixels found, with a wide spread
    assert vessel_interval(mixed)["specificity"] == pytest.approx((1.0, 1.0))  # no false positive anywhere
    assert vessel_interval(alike[:1]) == {"f1": None, "sensitivity": None, "specificity": None, "accuracy": None}


def test_the_second_observer_is_pooled_over_the_fov_pixels_of_all_images(tmp_path):
    """evaluate.human_reference: DATASET/test/label2 scored as a model is, its pooled figures those of the FOV
    pixels of every image concatenated (not one image's, not averaged per image)."""
    from evaluate import human_reference
    from imio import write_png

    folder = tmp_path / "SET" / "test" / "label2"
    folder.mkdir(parents=True)
    samples, ys, preds = [], [], []
    for i in range(3):
        label, prob, fov = _fov_case(i)
        second = prob >= 0.3 + 0.1 * i  # a second observer that disagrees differently on each image
        write_png(folder / f"{i}.png", second.astype(np.uint8) * 255)
        samples.append(Sample(f"{i}", None, label, fov))
        ys.append(label[fov])
        preds.append(second[fov])
    summary, rows = human_reference(tmp_path, "SET", samples)
    expected = binary_metrics(np.concatenate(ys), np.concatenate(preds))
    assert {k: summary[k] for k in expected} == expected
    assert [r["f1"] for r in rows] == [round(binary_metrics(y, p)["f1"], 5) for y, p in zip(ys, preds)]
    assert len({r["f1"] for r in rows}) == 3
