"""Arteries and veins: the label layout, how an artery/vein map is scored, and the summary calibres
(CRAE, CRVE, AVR). Torch-free: it runs in the light install.

**Labels** (the layout of ``../shared/data/AV``: RITE for DRIVE, Hu et al. 2013; LES-AV, Orlando et
al. 2018; as re-encoded by Zhou et al. 2021): one channel, 0 background, 1 artery, 2 vein, 3
uncertain (crossings, vessels whose kind the annotator could not tell): vessel, but neither artery
nor vein. A predicted map uses 0, 1, 2 (a model does not predict "uncertain").

**The model's outputs** (``classify``, ``kind_probabilities``): the artery/vein network (train.py
--av) gives two maps: the vessel probability (the vessel map, thresholded as a vessel model's) and
the probability that a vessel pixel is an artery rather than a vein. A pixel of the vessel mask is
an artery where that probability is at least 0.5, else a vein; per-class probabilities are
vessel x artery-given-vessel and vessel x (1 - it). The colour picture (``to_colour``) follows the
RITE convention: arteries red, veins blue (uncertain, only in labels: white); ``from_colour``
reads it back, so measure.py takes either.

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

``av_interval`` adds how far those pooled scores could move with other photographs: a bootstrap over the
photographs.

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

import cv2
import numpy as np

BACKGROUND, ARTERY, VEIN, UNCERTAIN = 0, 1, 2, 3
AV_VALUES = {BACKGROUND: "background", ARTERY: "artery", VEIN: "vein", UNCERTAIN: "uncertain"}
KNUDTSON_FACTOR = {"artery": 0.88, "vein": 0.95}
KNUDTSON_COUNT = 6
COUNT_KEYS = ("artery", "vein")
AV_COLUMNS = ["crae_px", "crve_px", "crae_um", "crve_um", "avr", "n_arteries_zoneB", "n_veins_zoneB", "av_note"]


COLOURS = {ARTERY: (255, 0, 0), VEIN: (0, 0, 255), UNCERTAIN: (255, 255, 255)}  # RITE: red, blue


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


def classify(vessels, p_artery):
    """The class map (0 background, 1 artery, 2 vein) of a boolean vessel mask and the model's
    artery-given-vessel probability map."""
    vessels = np.asarray(vessels, bool)
    return np.where(vessels, np.where(np.asarray(p_artery) >= 0.5, ARTERY, VEIN), BACKGROUND).astype(np.uint8)


def vote_segments(vessels, p_artery, scale=1.0):
    """The class map of a vessel mask where every vessel segment between branch points takes one
    class: the mean artery-given-vessel probability of its pixels. Segments are the pieces of the
    mask's skeleton (``skimage.morphology.skeletonize``) left when the branch and crossing points
    (skeleton pixels with 3 or more skeleton neighbours) and their 8 neighbours are taken out; every
    vessel pixel belongs to its nearest piece (``scipy.ndimage.distance_transform_edt``). A crossing
    thus cannot carry one vessel's class into the other half way along, the error pixel-wise
    labelling makes where an artery crosses a vein.

    ``scale`` < 1 (a photograph larger than the network's working scale: ``Segmenter.scale``): the
    pieces are cut, and every pixel given its nearest piece, on the mask shrunk by ``scale`` (area
    average >= 0.5), the scale the network saw the vessels at; that owner map, brought back to the
    photograph's size (nearest neighbour), then averages the full-size probability. An 8-megapixel
    photograph costs the skeleton and distance transform of a DRIVE-sized mask instead of its own."""
    vessels = np.asarray(vessels, bool)
    h, w = vessels.shape
    small = vessels
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(vessels.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    nearest, n = _nearest_piece(small)
    if n == 0:
        return classify(vessels, p_artery)
    if nearest.shape != vessels.shape:
        nearest = cv2.resize(nearest, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    owner = np.where(vessels, nearest, 0).ravel()
    total = np.bincount(owner, weights=np.asarray(p_artery, np.float64).ravel(), minlength=n + 1)
    mean = total / np.maximum(np.bincount(owner, minlength=n + 1), 1)
    return classify(vessels, mean[owner].reshape(vessels.shape))


def _nearest_piece(vessels):
    """(label of the nearest skeleton piece at every pixel, int32; number of pieces) of a boolean
    mask: ``vote_segments``' segments."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    skeleton = skeletonize(vessels)
    neighbours = ndi.convolve(skeleton.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - skeleton
    junctions = ndi.binary_dilation(skeleton & (neighbours >= 3), structure=np.ones((3, 3), bool))
    pieces, n = ndi.label(skeleton & ~junctions, structure=np.ones((3, 3), int))
    if n == 0:
        return pieces, 0
    _, (iy, ix) = ndi.distance_transform_edt(pieces == 0, return_indices=True)
    return pieces[iy, ix].astype(np.int32), n


def assign(vessels, p_artery, vote=True, scale=1.0):
    """The class map the artery/vein model gives a vessel mask: segment by segment (``vote_segments``,
    cut at ``scale``), or pixel by pixel (``classify``) with ``vote`` False."""
    return vote_segments(vessels, p_artery, scale) if vote else classify(vessels, p_artery)


def kind_probabilities(p_vessel, p_artery):
    """(artery, vein) probability maps: vessel x artery-given-vessel, vessel x (1 - it)."""
    p_vessel, p_artery = np.asarray(p_vessel, np.float32), np.asarray(p_artery, np.float32)
    return p_vessel * p_artery, p_vessel * (1 - p_artery)


def to_colour(classes):
    """RGB uint8 picture of a class map: arteries red, veins blue, uncertain white, background black."""
    classes = np.asarray(classes)
    rgb = np.zeros(classes.shape + (3,), np.uint8)
    for k, colour in COLOURS.items():
        rgb[classes == k] = colour
    return rgb


def from_colour(rgb, name="map"):
    """The class map of a ``to_colour`` picture (pure red, blue, white, black); AVLabelError for any
    other colour."""
    rgb = np.asarray(rgb)[..., :3]
    classes = np.zeros(rgb.shape[:2], np.uint8)
    known = np.all(rgb == 0, axis=-1)
    for k, colour in COLOURS.items():
        hit = np.all(rgb == colour, axis=-1)
        classes[hit] = k
        known |= hit
    if not known.all():
        y, x = np.argwhere(~known)[0]
        raise AVLabelError(f"{name}: not an artery/vein map (red arteries, blue veins, white uncertain, black "
                           f"background); pixel ({x}, {y}) is {tuple(int(v) for v in rgb[y, x])}")
    return classes


def read_classes(arr, name="map"):
    """Class indices from what a file holds: one channel of av.py's values, or a ``to_colour`` picture."""
    arr = np.asarray(arr)
    return from_colour(arr, name) if arr.ndim == 3 else check_av_label(arr, name)


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


INTERVAL_KEYS = ("artery_f1", "vein_f1", "vessel_f1", "accuracy_found")


def av_interval(per_image, keys=INTERVAL_KEYS, level=0.95, n_resamples=2000, seed=0):
    """How far the pooled scores could move with other photographs of the same kind: for each of ``keys``
    (``av_scores`` names), the percentile bootstrap interval at ``level`` over the photographs
    (``per_image``: each image's ``av_counts``), resampled with replacement and pooled again
    (``metrics.interval_over_images``). {key: (low, high)}; None for a key with no value in a resample
    (no annotated pixel found), and for every key with fewer than two photographs."""
    from metrics import interval_over_images

    return interval_over_images(per_image, av_scores, keys, level, n_resamples, seed)


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
    return [w for w, _ in zone_b_vessels(vessels, fov, disc, fov_diameter_px)[0]]


def zone_b_vessels(vessels, fov, disc, fov_diameter_px=None):
    """([(width, piece number)] of every vessel of one kind crossing zone B, the pieces' label image):
    what ``zone_b_widths`` measures, with where each vessel is (for drawing the ones used)."""
    from scipy import ndimage as ndi

    from morphometry import MIN_SEGMENT_FRACTION, fov_diameter, measure_mask, zone_masks

    fov = np.asarray(fov, bool)
    ring = zone_masks(fov.shape, disc)["zoneB"] & fov
    inside = np.asarray(vessels, bool) & ring
    if not inside.any():
        return [], np.zeros(fov.shape, np.int32)
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
    found = []
    for k, segs in per_piece.items():
        long_enough = [c for length, c in segs if length >= min_len]
        found.append((max(long_enough) if long_enough else max(segs)[1], k))
    return found, pieces


def knudtson_vessels(classes, fov, disc):
    """{ARTERY: ranks, VEIN: ranks}: the vessels Knudtson's formula uses for CRAE and CRVE (the six widest
    of each kind crossing zone B of ``disc``, as ``measure_av`` picks them). ``ranks`` is a uint8 image:
    1 on the widest vessel's pixels inside zone B, 2 on the next, ... up to 6; 0 elsewhere."""
    classes = np.asarray(classes)
    out = {}
    for k in (ARTERY, VEIN):
        found, pieces = zone_b_vessels(classes == k, fov, disc)
        ranks = np.zeros(classes.shape, np.uint8)
        for rank, (_, n) in enumerate(sorted(found, reverse=True)[:KNUDTSON_COUNT], 1):
            ranks[pieces == n] = rank
        out[k] = ranks
    return out


def knudtson_kind_agreement(classes, reference, fov, disc):
    """How many of the vessels that ``classes``' CRAE and CRVE are made of (``knudtson_vessels``) have
    that kind in a ``reference`` map (e.g. the manual annotation): {"artery": (same, other, neither),
    "vein": (...)}. A vessel's reference kind is the majority of the reference's artery and vein pixels
    inside it (ties: other); "neither": the reference has no artery or vein pixel there (background or
    uncertain only)."""
    reference = np.asarray(reference)
    out = {}
    for k, ranks in knudtson_vessels(classes, fov, disc).items():
        same = other = neither = 0
        for rank in range(1, int(ranks.max()) + 1):
            ref = reference[ranks == rank]
            mine, theirs = int(np.sum(ref == k)), int(np.sum(ref == (VEIN if k == ARTERY else ARTERY)))
            if mine + theirs == 0:
                neither += 1
            elif mine > theirs:
                same += 1
            else:
                other += 1
        out["artery" if k == ARTERY else "vein"] = (same, other, neither)
    return out


def draw_zone_b(photo, classes, fov, disc):
    """A picture of what CRAE and CRVE are made of: the photograph darkened, zone B's two circles (2
    and 3 disc radii), arteries red and veins blue (pale), and the vessels Knudtson's formula uses
    (the six widest of each kind crossing zone B) in full colour."""
    import cv2

    photo = np.asarray(photo)
    rgb = (np.dstack([photo] * 3) if photo.ndim == 2 else photo[..., :3]).astype(np.float32) * 0.45
    classes = np.asarray(classes)
    for k in (ARTERY, VEIN):
        rgb[classes == k] = 0.45 * np.array(COLOURS[k]) + 0.3 * rgb[classes == k]
    if disc and disc.get("disc_found"):
        for k, ranks in knudtson_vessels(classes, fov, disc).items():
            rgb[ranks > 0] = COLOURS[k]
        centre = (int(round(disc["disc_x_px"])), int(round(disc["disc_y_px"])))
        thick = max(1, round(photo.shape[1] / 500))
        for m in (2, 3):
            cv2.circle(rgb, centre, int(round(m * disc["disc_radius_px"])), (255, 255, 0), thick, cv2.LINE_AA)
    return np.clip(rgb, 0, 255).astype(np.uint8)


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
