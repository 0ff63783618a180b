"""Arteries and veins: the label layout, how an artery/vein map is scored, and the summary calibres
(CRAE, CRVE, AVR). Torch-free: it runs in the light install.

**Labels** (the layout of ``../shared/data/AV``: RITE for DRIVE, Hu et al. 2013; LES-AV, Orlando et
al. 2018; as re-encoded by Zhou et al. 2021): one channel, 0 background, 1 artery, 2 vein, 3
uncertain (crossings, vessels whose kind the annotator could not tell): vessel, but neither artery
nor vein. A predicted map uses 0, 1, 2 (a model does not predict "uncertain").

**Scoring** (``av_counts`` per image, ``av_scores`` of the pooled counts; pixels inside the FOV,
pooled over the images as the vessel metrics are):

* per class (artery, vein): F1, sensitivity and specificity of "this class" against "anything
  else" over the FOV's pixels, the annotation's uncertain pixels left out of both (they are
  neither class; scoring them either way would reward or punish a guess the annotator did not make);
* ``vessel_f1``: F1 of the union (any class) against every annotated vessel pixel, uncertain ones
  included (they are vessel);
* ``accuracy_found``: of the annotated artery and vein pixels the model marks as vessel, the share
  given the annotated class (the measure of Hu et al. 2013 and of most A/V papers after it: the
  classification of the vessels found, apart from finding them); ``accuracy_centreline``: the same
  on the annotation's centreline pixels (``skimage.morphology.skeletonize`` of the vessel label),
  where calibre does not weigh wide vessels more.

**Summary calibres** (``knudtson``): Knudtson et al. 2003, "Revised formulas for summarizing
retinal vessel diameters", Curr Eye Res 27:143-149: the six widest arterioles (venules) crossing
zone B; pair the widest with the narrowest, combine each pair as 0.88 sqrt(w1^2 + w2^2) for
arterioles (0.95 for venules), carry the middle one unpaired when the count is odd, and repeat until
one value remains: CRAE (CRVE). AVR = CRAE / CRVE. Fewer than six: no value, and the reason.

**The vessels crossing zone B** (``zone_b_widths``): zone B is the ring 2-3 disc radii from the
disc's centre (morphometry.ZONES) inside the FOV. Each connected piece (8-connected) of the artery
(vein) map inside it is one vessel; its pieces between branch points are morphometry's segments,
each with its calibre measured across the vessel (the median over its points of the width along
the normal, leaving out the ends at branch points: morphometry.py). A vessel's width is that of
its widest segment at least ``MIN_SEGMENT_FRACTION`` of the FOV diameter long (a vessel that
branches inside the zone is measured on its trunk, as Knudtson et al. do); a piece with no segment
that long: its longest segment's. ``measure_av`` gives CRAE, CRVE (px, and um when the scale is
known), AVR, how many vessels of each kind were found, and ``av_note`` with the reasons for any
empty value.
"""
import math

import numpy as np

BACKGROUND, ARTERY, VEIN, UNCERTAIN = 0, 1, 2, 3
AV_VALUES = {BACKGROUND: "background", ARTERY: "artery", VEIN: "vein", UNCERTAIN: "uncertain"}
KNUDTSON_FACTOR = {"artery": 0.88, "vein": 0.95}
KNUDTSON_COUNT = 6
COUNT_KEYS = ("artery", "vein")
AV_COLUMNS = ["crae_px", "crve_px", "crae_um", "crve_um", "avr", "n_arteries_zoneB", "n_veins_zoneB", "av_note"]


class AVLabelError(ValueError):
    """A file that is not an artery/vein label of this layout."""


def check_av_label(arr, name="label"):
    """``arr`` as uint8 class indices, or AVLabelError naming the values that do not belong."""
    if arr.ndim != 2:
        raise AVLabelError(f"{name}: not an artery/vein label (one channel, values {AV_VALUES}); it has colour channels")
    unknown = sorted(set(np.unique(arr).tolist()) - set(AV_VALUES))
    if unknown:
        raise AVLabelError(f"{name}: not an artery/vein label (values {AV_VALUES}); found {unknown[:5]}")
    return arr.astype(np.uint8)


def _confusion(truth, pred):
    tp = int(np.count_nonzero(truth & pred))
    fp = int(np.count_nonzero(~truth & pred))
    fn = int(np.count_nonzero(truth & ~pred))
    tn = int(truth.size - tp - fp - fn)
    return np.array([tp, fp, fn, tn], np.int64)


def av_counts(label, pred, fov):
    """The counts one image adds to the pooled scores: ``label`` (0-3) and ``pred`` (0-2) class maps,
    ``fov`` a boolean mask. Returns a dict of int arrays (see the module docstring)."""
    from skimage.morphology import skeletonize

    label, pred, fov = np.asarray(label), np.asarray(pred), np.asarray(fov, bool)
    if label.shape != pred.shape or label.shape != fov.shape:
        raise ValueError(f"label {label.shape}, prediction {pred.shape} and FOV {fov.shape} differ in size")
    counts = {}
    scored = fov & (label != UNCERTAIN)
    for name, k in (("artery", ARTERY), ("vein", VEIN)):
        counts[name] = _confusion(label[scored] == k, pred[scored] == k)
    counts["vessel"] = _confusion(label[fov] > 0, pred[fov] > 0)
    known = fov & ((label == ARTERY) | (label == VEIN))
    found = known & (pred > 0)
    counts["found"] = np.array([int(np.count_nonzero(found & (pred == label))), int(np.count_nonzero(found))], np.int64)
    centre = skeletonize(label > 0) & known
    found_c = centre & (pred > 0)
    counts["centreline"] = np.array([int(np.count_nonzero(found_c & (pred == label))), int(np.count_nonzero(found_c))],
                                    np.int64)
    return counts


def add_counts(total, counts):
    """Pool: ``total`` (a dict, or None) plus one image's ``counts``."""
    if total is None:
        return {k: v.copy() for k, v in counts.items()}
    return {k: total[k] + counts[k] for k in total}


def _binary(c):
    tp, fp, fn, tn = (int(v) for v in c)
    return {"f1": 2 * tp / max(2 * tp + fp + fn, 1), "sensitivity": tp / max(tp + fn, 1),
            "specificity": tn / max(tn + fp, 1)}


def av_scores(counts):
    """The scores of (pooled) ``counts``: artery_/vein_ f1, sensitivity, specificity; vessel_f1;
    accuracy_found, accuracy_centreline (None when the model found no annotated artery or vein pixel)."""
    out = {}
    for name in COUNT_KEYS:
        out.update({f"{name}_{k}": v for k, v in _binary(counts[name]).items()})
    out["vessel_f1"] = _binary(counts["vessel"])["f1"]
    for key in ("found", "centreline"):
        right, n = (int(v) for v in counts[key])
        out[f"accuracy_{key}"] = right / n if n else None
    return out


def knudtson(widths, kind):
    """CRAE (``kind`` "artery") or CRVE ("vein") of vessel ``widths`` (any unit; the six widest are
    used): (value, note). Fewer than six widths: (None, the reason)."""
    if kind not in KNUDTSON_FACTOR:
        raise ValueError(f"kind must be one of {sorted(KNUDTSON_FACTOR)}, not {kind!r}")
    w = sorted((float(x) for x in widths if x is not None and math.isfinite(float(x)) and float(x) > 0), reverse=True)
    if len(w) < KNUDTSON_COUNT:
        return None, (f"{len(w)} {kind} vessel(s) measured crossing zone B; Knudtson's formula needs "
                      f"{KNUDTSON_COUNT}")
    w = w[:KNUDTSON_COUNT]
    factor = KNUDTSON_FACTOR[kind]
    while len(w) > 1:
        w.sort(reverse=True)
        n = len(w)
        combined = [factor * math.hypot(w[i], w[n - 1 - i]) for i in range(n // 2)]
        w = combined + ([w[n // 2]] if n % 2 else [])
    return w[0], ""


def avr(crae, crve):
    """Arteriole-to-venule ratio CRAE / CRVE, or None when either is missing."""
    return crae / crve if crae is not None and crve else None


def zone_b_widths(vessels, fov, disc, fov_diameter_px=None):
    """The width (px) of every vessel of one kind (bool ``vessels``) crossing zone B of ``disc`` (a dict
    with disc_x_px, disc_y_px, disc_radius_px) inside ``fov``: a list, one value per vessel."""
    from scipy import ndimage as ndi

    from morphometry import MIN_SEGMENT_FRACTION, fov_diameter, measure_mask, zone_masks

    fov = np.asarray(fov, bool)
    ring = zone_masks(fov.shape, disc)["zoneB"] & fov
    inside = np.asarray(vessels, bool) & ring
    if not inside.any():
        return []
    diam = fov_diameter(fov) if fov_diameter_px is None else float(fov_diameter_px)
    min_len = MIN_SEGMENT_FRACTION * diam
    _, segments, _ = measure_mask(inside, ring, min_segment_px=min_len, fov_diameter_px=diam)
    pieces, _ = ndi.label(inside, structure=np.ones((3, 3)))
    per_piece = {}
    for seg in segments:
        if seg.calibre is None or len(seg.points) == 0:
            continue
        y, x = np.round(seg.points[len(seg.points) // 2]).astype(int)
        k = int(pieces[min(max(y, 0), fov.shape[0] - 1), min(max(x, 0), fov.shape[1] - 1)])
        if k:
            per_piece.setdefault(k, []).append((seg.length, seg.calibre))
    widths = []
    for segs in per_piece.values():
        long_enough = [c for length, c in segs if length >= min_len]
        widths.append(max(long_enough) if long_enough else max(segs)[1])
    return widths


def measure_av(classes, fov, disc, um_per_px=None):
    """CRAE, CRVE and AVR of one artery/vein map (``classes``: 0 background, 1 artery, 2 vein, 3
    uncertain, which is neither) with its ``fov`` and ``disc`` (disc.py's COLUMNS): a dict of
    AV_COLUMNS; empty values carry their reason in ``av_note``, never a made-up number."""
    row = dict.fromkeys(AV_COLUMNS)
    if not disc or not disc.get("disc_found"):
        row["av_note"] = f"no disc, so no zone B: {(disc or {}).get('disc_note') or 'not given'}"
        return row
    classes = np.asarray(classes)
    notes = []
    for kind, k, key in (("artery", ARTERY, "crae"), ("vein", VEIN, "crve")):
        widths = zone_b_widths(classes == k, fov, disc)
        row[f"n_{'arteries' if k == ARTERY else 'veins'}_zoneB"] = len(widths)
        value, note = knudtson(widths, kind)
        row[f"{key}_px"] = value
        if value is not None and um_per_px:
            row[f"{key}_um"] = value * um_per_px
        if note:
            notes.append(note)
    row["avr"] = avr(row["crae_px"], row["crve_px"])
    row["av_note"] = "; ".join(notes)
    return row
