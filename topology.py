"""Is the predicted vessel tree the annotated tree? Topology scores of a binary mask against a
reference mask, beside the pixel metrics. No PyTorch: it runs in the light install.

Everything is taken inside the field of view (FOV), per image, on the whole FOV (not on patches);
the summary pools the counts over the images. Definitions and sources:

* **Centreline**: the pruned skeleton ``morphometry.measure_mask`` measures (scikit-image's
  thinning of the mask inside the FOV, skan's graph, thinning spurs removed), so that the scores
  and the vessel measurements see the same tree.
* **Centreline precision** (clDice's "topology precision", Tprec) = |S(pred) & ref| / |S(pred)|:
  the share of the predicted centreline pixels that lie inside the reference vessels.
  **Centreline recall** (Tsens) = |S(ref) & pred| / |S(ref)|: the share of the reference
  centreline the prediction covers. **clDice** = 2 Tprec Tsens / (Tprec + Tsens) (Shit et al.,
  "clDice - a novel topology-preserving loss function for tubular structure segmentation",
  CVPR 2021, eq. 1-3). Pooled: the four pixel counts summed over the images, then the ratios.
* **Length, branch-point and end-point errors**: (pred - ref) / ref of morphometry's centreline
  length (along the smoothed path, in px), number of branch points (clusters of centreline pixels
  with three or more neighbours) and of end points (one neighbour). Per image; pooled: the sums
  over the images. Negative: the prediction's tree is shorter / has fewer branch points.
* **Betti numbers** of the mask inside the FOV: b0 = connected components (8-connected vessel
  pixels), b1 = loops = holes, the background components (4-connected, the dual connectivity)
  enclosed by vessel pixels, i.e. not connected to the outside of the FOV or the image border
  (b0 - b1 is the Euler characteristic). **Betti errors** |b(pred) - b(ref)| per image (as
  Hu et al., "Topology-preserving deep image segmentation", NeurIPS 2019, and the clDice paper
  count them, there on patches, here on the whole FOV); the summary gives their mean over the
  images.
"""
import numpy as np

# per-image columns, in order (ratios; *_error: relative, signed; betti*_error: absolute counts)
COLUMNS = ["cldice", "cl_precision", "cl_recall", "length_error", "branch_error", "end_error",
           "betti0_error", "betti1_error"]
COUNTS = ["skel_pred", "skel_pred_in_ref", "skel_ref", "skel_ref_in_pred", "length_pred", "length_ref",
          "branch_pred", "branch_ref", "end_pred", "end_ref", "betti0_pred", "betti0_ref", "betti1_pred", "betti1_ref"]
NAMES = {
    "cldice": "clDice", "cl_precision": "centreline precision", "cl_recall": "centreline recall",
    "length_error": "centreline length error", "branch_error": "branch-point count error",
    "end_error": "end-point count error", "betti0_error": "Betti-0 error (components)",
    "betti1_error": "Betti-1 error (loops)",
}
MEANINGS = {
    "cldice": "harmonic mean of centreline precision and recall (1: every centreline inside the other mask)",
    "cl_precision": "share of the predicted centreline inside the annotated vessels",
    "cl_recall": "share of the annotated centreline the prediction covers",
    "length_error": "(predicted - annotated) / annotated centreline length",
    "branch_error": "(predicted - annotated) / annotated number of branch points",
    "end_error": "(predicted - annotated) / annotated number of end points",
    "betti0_error": "absolute difference in the number of separate pieces (a test set: mean per image)",
    "betti1_error": "absolute difference in the number of loops (a test set: mean per image)",
}


def betti_numbers(mask, fov=None):
    """(b0, b1) of ``mask & fov``: 8-connected components, and holes (4-connected background
    components that touch neither the image border nor the outside of the FOV)."""
    from scipy import ndimage as ndi

    vessel = np.asarray(mask, bool) if fov is None else np.asarray(mask, bool) & np.asarray(fov, bool)
    _, b0 = ndi.label(vessel, structure=np.ones((3, 3), bool))
    background = np.pad(~vessel, 1, constant_values=True)  # one frame: the outside is one component
    _, n = ndi.label(background)  # 4-connectivity (SciPy's default cross)
    return int(b0), int(n - 1)


def centreline(mask, fov=None):
    """(morphometry row, centreline) of a mask: the tree the vessel measurements see."""
    from morphometry import measure_mask

    row, _, skel = measure_mask(mask, fov, want_segments=False)
    return row, skel


def counts(pred, ref, fov=None):
    """The raw counts (``COUNTS``) of one image."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if fov is None:
        fov = np.ones_like(pred)
    fov = np.asarray(fov, bool)
    row_p, skel_p = centreline(pred, fov)
    row_r, skel_r = centreline(ref, fov)
    (b0p, b1p), (b0r, b1r) = betti_numbers(pred, fov), betti_numbers(ref, fov)
    return {
        "skel_pred": int(skel_p.sum()), "skel_pred_in_ref": int((skel_p & ref).sum()),
        "skel_ref": int(skel_r.sum()), "skel_ref_in_pred": int((skel_r & pred).sum()),
        "length_pred": float(row_p["centreline_length_px"] or 0.0), "length_ref": float(row_r["centreline_length_px"] or 0.0),
        "branch_pred": int(row_p["n_branch_points"] or 0), "branch_ref": int(row_r["n_branch_points"] or 0),
        "end_pred": int(row_p["n_end_points"] or 0), "end_ref": int(row_r["n_end_points"] or 0),
        "betti0_pred": b0p, "betti0_ref": b0r, "betti1_pred": b1p, "betti1_ref": b1r,
    }


def _ratio(num, den):
    return float(num) / den if den else None


def _relative(pred, ref):
    return (float(pred) - ref) / ref if ref else None


def _ratios(c):
    precision = _ratio(c["skel_pred_in_ref"], c["skel_pred"])
    recall = _ratio(c["skel_ref_in_pred"], c["skel_ref"])
    cl = None
    if precision is not None and recall is not None:
        cl = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "cldice": cl, "cl_precision": precision, "cl_recall": recall,
        "length_error": _relative(c["length_pred"], c["length_ref"]),
        "branch_error": _relative(c["branch_pred"], c["branch_ref"]),
        "end_error": _relative(c["end_pred"], c["end_ref"]),
    }


def _betti_errors(c):
    return abs(c["betti0_pred"] - c["betti0_ref"]), abs(c["betti1_pred"] - c["betti1_ref"])


def scores(c):
    """``COLUMNS`` of one image from its counts ``c`` (None where a ratio has no denominator)."""
    b0, b1 = _betti_errors(c)
    return {**_ratios(c), "betti0_error": b0, "betti1_error": b1}


def pooled(per_image):
    """``COLUMNS`` over a test set from per-image counts: pixel counts and lengths summed before the
    ratios, Betti errors averaged over the images."""
    total = {k: sum(c[k] for c in per_image) for k in COUNTS}
    errors = np.array([_betti_errors(c) for c in per_image], float).reshape(-1, 2)
    b0, b1 = errors.mean(0) if len(errors) else (None, None)
    return {**_ratios(total), "betti0_error": b0, "betti1_error": b1}


def centreline_pieces(pred, ref, fov=None):
    """(covered, missed, false) centreline pixels: the reference centreline inside and outside the
    prediction, and the predicted centreline outside the reference (the pieces clDice's recall and
    precision count)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    _, skel_p = centreline(pred, fov)
    _, skel_r = centreline(ref, fov)
    return skel_r & pred, skel_r & ~pred, skel_p & ~ref


def centreline_length(mask, fov=None):
    """Centreline length (px) of ``mask`` inside ``fov``: morphometry's, along the smoothed path."""
    row, _ = centreline(mask, fov)
    return float(row["centreline_length_px"] or 0.0)


def length_matching_threshold(samples, probs, bridge=False, min_fragment=0, lo=0.01, hi=0.99, steps=12, threshold=None):
    """The *tree threshold* of a model's maps: the threshold at which the centreline length of its
    masks (``postprocess.vessel_mask``: ``bridge``, ``min_fragment`` as given), summed over the
    images, equals that of their annotations (``samples``' labels, inside their FOVs). With
    ``threshold`` given, the threshold stays there and what varies is the level down to which thin
    vessels are kept as centrelines (``vessel_mask``'s ``thin``; ``hi`` is then at most ``threshold``).

    The length only grows as the level falls (a lower level keeps every pixel a higher one keeps, up
    to the thinning's pixel-level noise), so ``steps`` bisections between ``lo`` and ``hi`` find it to
    (hi - lo) / 2**steps. Returns (level, relative length error there); where even ``lo`` gives too
    short a tree, ``lo`` (and where ``hi`` gives too long a one, ``hi``)."""
    from morphometry import fov_diameter
    from postprocess import vessel_mask

    fovs = [np.ones(s.label.shape, bool) if s.fov is None else np.asarray(s.fov, bool) for s in samples]
    reference = sum(centreline_length(s.label, f) for s, f in zip(samples, fovs))
    if reference <= 0:
        raise ValueError("the annotations have no centreline inside their FOVs")
    if threshold is not None:
        hi = min(hi, threshold)

    def mask(p, t, f):
        if threshold is None:
            return vessel_mask(p, t, fov_diameter(f), bridge, min_fragment)
        return vessel_mask(p, threshold, fov_diameter(f), bridge, min_fragment, thin=t)

    def error(t):
        length = sum(centreline_length(mask(p, t, f), f) for p, f in zip(probs, fovs))
        return (length - reference) / reference

    e_lo, e_hi = error(lo), error(hi)
    if e_lo <= 0:
        return lo, e_lo
    if e_hi >= 0:
        return hi, e_hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        e_mid = error(mid)
        if e_mid > 0:
            lo, e_lo = mid, e_mid
        else:
            hi, e_hi = mid, e_mid
    return (lo, e_lo) if abs(e_lo) <= abs(e_hi) else (hi, e_hi)
