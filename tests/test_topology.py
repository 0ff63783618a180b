"""Topology scores (topology.py) on synthetic masks with known answers."""
import numpy as np
import pytest

import topology as T


def canvas(size=120):
    return np.zeros((size, size), bool)


def ring(size=120, r_out=40, r_in=34, centre=None):
    yy, xx = np.mgrid[:size, :size]
    cy, cx = centre or (size / 2, size / 2)
    d = np.hypot(yy - cy, xx - cx)
    return (d <= r_out) & (d > r_in)


def tree():
    """A trunk with one branch: 1 branch point, 3 end points."""
    m = canvas()
    m[60:65, 10:110] = True          # horizontal trunk, 5 px wide
    m[15:62, 58:63] = True           # a branch up from its middle
    return m


@pytest.mark.parametrize("mask,b0,b1", [
    (ring(), 1, 1),
    (ring() | ring(r_out=20, r_in=15), 2, 2),          # a ring inside a ring: two pieces, two loops
    (ring(centre=(60, 40)) | ring(centre=(60, 80)), 1, 3),  # two overlapping rings: 3 enclosed regions
    (tree(), 1, 0),
    (canvas(), 0, 0),
])
def test_betti_numbers_of_known_shapes(mask, b0, b1):
    assert T.betti_numbers(mask) == (b0, b1)


def test_betti_holes_open_to_the_border_or_outside_the_fov_are_not_loops():
    m = ring(centre=(0, 60))  # a ring cut by the image's top edge: its inside reaches the border
    assert T.betti_numbers(m) == (1, 0)
    full = ring()
    fov = canvas()
    fov[:, :70] = True  # half the ring outside the FOV: inside it the ring is an arc
    assert T.betti_numbers(full, fov) == (1, 0)
    assert T.betti_numbers(full) == (1, 1)
    # diagonal neighbours join vessel pixels (8-connectivity) and do not let a hole leak (4-connected background)
    d = canvas(12)
    for i in range(5):
        d[2 + i, 5 + i] = d[2 + i, 5 - i] = d[10 - i, 5 + i] = d[10 - i, 5 - i] = True  # a diamond
    assert T.betti_numbers(d) == (1, 1)


def test_identical_masks_score_perfectly():
    m = tree()
    s = T.scores(T.counts(m, m))
    assert s["cldice"] == s["cl_precision"] == s["cl_recall"] == 1.0
    assert s["length_error"] == s["branch_error"] == s["end_error"] == 0.0
    assert s["betti0_error"] == s["betti1_error"] == 0


def test_a_gap_costs_recall_and_a_component_not_precision():
    ref = tree()
    pred = ref.copy()
    pred[:, 30:36] = False  # a 6 px gap in the trunk, left of the branch
    c = T.counts(pred, ref)
    s = T.scores(c)
    assert s["cl_precision"] == 1.0
    missing = c["skel_ref"] - c["skel_ref_in_pred"]
    assert 5 <= missing <= 7  # the gap's centreline pixels
    assert s["cl_recall"] == pytest.approx(1 - missing / c["skel_ref"])
    assert s["cldice"] == pytest.approx(2 * s["cl_recall"] / (1 + s["cl_recall"]))
    assert s["betti0_error"] == 1 and s["betti1_error"] == 0
    assert s["end_error"] == pytest.approx(2 / 3, abs=1e-9)  # 3 ends -> 5
    assert s["branch_error"] == 0.0
    assert -0.12 < s["length_error"] < -0.03  # ~6 px gap out of ~145 px of tree (+ the ends thinning cuts)


def test_a_missing_branch_and_a_false_blob():
    ref = tree()
    trunk = canvas()
    trunk[60:65, 10:110] = True
    s = T.scores(T.counts(trunk, ref))
    assert s["branch_error"] == -1.0 and s["end_error"] == pytest.approx(-1 / 3)
    assert s["cl_precision"] == 1.0 and s["cl_recall"] < 0.75
    assert s["length_error"] == pytest.approx(-45 / 145, abs=0.05)
    blob = ref.copy()
    blob[95:100, 20:60] = True  # a separate false vessel
    s = T.scores(T.counts(blob, ref))
    assert s["cl_recall"] == 1.0 and s["cl_precision"] < 0.85
    assert s["betti0_error"] == 1 and s["length_error"] > 0.2


def test_a_closed_loop_is_a_betti1_error():
    ref = ring()
    pred = ref.copy()
    pred[55:65, 10:30] = False  # the ring opened
    s = T.scores(T.counts(pred, ref))
    assert s["betti1_error"] == 1 and s["betti0_error"] == 0


def test_pooled_sums_counts_before_the_ratios():
    ref = tree()
    pred = ref.copy()
    pred[:, 30:36] = False
    a, b = T.counts(pred, ref), T.counts(ref, ref)
    p = T.pooled([a, b])
    recall = (a["skel_ref_in_pred"] + b["skel_ref_in_pred"]) / (a["skel_ref"] + b["skel_ref"])
    assert p["cl_recall"] == pytest.approx(recall)
    assert p["end_error"] == pytest.approx(2 / 6)  # 8 ends against 6
    assert p["betti0_error"] == pytest.approx(0.5)  # |2-1| and 0, averaged over two images
    assert T.pooled([])["cldice"] is None


def test_empty_masks_give_no_ratio_but_no_crash():
    ref = tree()
    s = T.scores(T.counts(canvas(), ref))
    assert s["cl_recall"] == 0.0 and s["cl_precision"] is None and s["cldice"] is None
    assert s["length_error"] == -1.0
    s = T.scores(T.counts(ref, canvas()))
    assert s["cl_recall"] is None and s["length_error"] is None and s["betti0_error"] == 1


def test_error_pieces_are_the_missed_and_false_centreline():
    ref = tree()
    pred = ref.copy()
    pred[:, 30:36] = False
    pred[95:100, 20:60] = True
    _, missed, false = T.centreline_pieces(pred, ref)
    ys, xs = np.nonzero(missed)
    assert missed.sum() >= 5 and xs.min() >= 30 and xs.max() <= 35 and set(ys) <= {61, 62, 63}
    ys, xs = np.nonzero(false)
    assert false.sum() >= 30 and ys.min() >= 95 and ys.max() <= 99


class _Sample:
    def __init__(self, label, fov=None):
        self.label, self.fov = label, fov


def _bars():
    """An annotation of a wide vessel (prob 0.9) and a thin one (prob 0.3), and a map that also has a
    faint false vessel (prob 0.1) the annotation does not have."""
    label = canvas(160)
    label[40:45, 10:150] = True   # wide vessel, 140 px
    label[100, 20:100] = True     # thin vessel, 80 px
    prob = np.zeros(label.shape, np.float32)
    prob[40:45, 10:150] = 0.9
    prob[100, 20:100] = 0.3
    prob[130, 20:140] = 0.1       # not annotated
    return label, prob


def test_tree_threshold_keeps_the_faint_vessel_and_not_the_false_one():
    label, prob = _bars()
    t, err = T.length_matching_threshold([_Sample(label)], [prob])
    assert 0.1 < t <= 0.3  # below 0.1 the false vessel doubles the length; above 0.3 the thin one is lost
    assert err == pytest.approx(0.0, abs=0.02)
    # the same map thresholded above the thin vessel's probability is a third short: the bisection saw that
    short = T.centreline_length(prob >= 0.5) / T.centreline_length(label) - 1
    assert short < -0.3


def test_tree_threshold_stops_at_the_bounds_when_no_threshold_matches():
    label, prob = _bars()
    t, err = T.length_matching_threshold([_Sample(label)], [prob * 0.0 + (prob >= 0.9) * 0.9])  # thin vessel absent
    assert t == 0.01 and err < -0.3  # the tree stays short at every threshold: the lowest, and its error
    t, err = T.length_matching_threshold([_Sample(label)], [np.where(prob > 0, 0.995, 0).astype(np.float32)])
    assert t == 0.99 and err > 0.5  # the false vessel is there at every threshold


def test_tree_threshold_pools_the_images_and_respects_the_fov():
    label, prob = _bars()
    fov = np.ones(label.shape, bool)
    fov[120:, :] = False  # the false vessel is outside the FOV: it never counts
    t, err = T.length_matching_threshold([_Sample(label, fov)], [prob])
    assert t <= 0.1 and err == pytest.approx(0.0, abs=0.02)  # then even the lowest threshold matches
    # two images: one whose thin vessel is missing from the map, one whose map is the label: the pooled
    # length is short at every threshold above the faint false vessel, and matched only by taking it in
    missing = np.where(prob >= 0.9, 0.9, np.where(prob == np.float32(0.1), 0.1, 0)).astype(np.float32)
    t, err = T.length_matching_threshold([_Sample(label), _Sample(label)], [missing, label.astype(np.float32)])
    assert t <= 0.1 and abs(err) < 0.2


def test_the_thin_level_is_matched_with_the_threshold_kept():
    """``threshold`` given: the threshold stays, and the level down to which thin vessels are kept as
    centrelines is what the bisection chooses; the wide vessel is not widened on the way."""
    label = canvas(160)
    label[40:45, 10:150] = True     # wide vessel
    label[45:120, 80] = True        # thin branch off it, annotated
    prob = np.zeros(label.shape, np.float32)
    prob[40:45, 10:150] = 0.9
    prob[38:40, 10:150] = prob[45:47, 10:150] = 0.2   # the wide vessel's faint halo: a lower threshold widens it
    prob[45:120, 79:82] = 0.3       # the thin branch, faint and 3 px wide in the map
    prob[47:150, 120] = 0.1         # a faint false branch, not annotated
    t, err = T.length_matching_threshold([_Sample(label)], [prob], threshold=0.5)
    assert 0.1 < t <= 0.3 and err == pytest.approx(0.0, abs=0.05)
    from postprocess import vessel_mask

    mask = vessel_mask(prob, 0.5, thin=t)
    assert mask[40:45, 10:150].all() and not mask[38:40].any() and not mask[45:47, 10:75].any()
    assert mask[60:110, 79:82].sum(axis=1).max() == 1   # the branch as a 1 px line
    assert not mask[60:150, 120].any()
    # a faint vessel that does not continue the mask never comes in as a centreline: too short at every level
    apart = label.copy()
    apart[140, 10:100] = True
    lone = prob.copy()
    lone[140, 10:100] = 0.3
    lone[47:150, 120] = 0.0          # (without the false branch, which would stand in for its length)
    t3, err3 = T.length_matching_threshold([_Sample(apart)], [lone], threshold=0.5)
    assert t3 == 0.01 and err3 < -0.2
    # the threshold moved instead takes the halo in: the wide vessel grows by 4 rows
    t2, _ = T.length_matching_threshold([_Sample(label)], [prob])
    assert vessel_mask(prob, t2)[38:40, 10:150].mean() > 0.9
