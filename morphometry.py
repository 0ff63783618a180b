"""Measurements of the vessel tree in a binary vessel mask: density, length, calibre, tortuosity,
fractal dimension and branching (the "oculomics" measures). No PyTorch: it runs in the light install.

Every measure is taken inside the field of view (FOV). Definitions, constants and sources:

* **Centreline**: ``skimage.morphology.skeletonize`` (Zhang & Suen 1984 thinning) of the mask
  inside the FOV; skan's ``Skeleton`` (Nunez-Iglesias et al. 2018) splits it into **segments**,
  the paths between end points (1 neighbour) and branch points (3 or more neighbours), each
  with its pixels in order along the vessel (never in raster order). A cluster of touching
  branch-point pixels is one **branch point**; the tiny paths inside such a cluster are not
  segments.
* **Length along the vessel**, not along the pixel staircase: each segment's ordered pixels are
  smoothed with a Savitzky-Golay filter (quadratic, ``SMOOTH_WINDOW`` = 11 px, SciPy), which keeps
  straight lines and gentle curves and removes the staircase of a digital line (the 1 / sqrt(2)
  steps of 8-connected pixels overestimate a line at 22.5 degrees by 8 %); the segment's length is
  the length of the smoothed polyline. Thinning stops about half a vessel width short of a free
  vessel end, so at an end point the path is extended along its direction by the distance
  transform there (the local radius). A straight bar at any angle thus has its true length and
  distance factor 1 (tested).
* **Vessel area density**: vessel pixels / FOV pixels. **Length density**: centreline length /
  FOV area (1/px, or mm per mm^2).
* **Mean calibre**: vessel area / centreline length (the mean width of a tube of that area and
  length). **Segment calibre**, measured across the vessel: at every point of the smoothed
  centreline the mask, linearly interpolated, is integrated along the normal out to the vessel's
  edges (``PROFILE_STEP`` = 0.5 px steps; a bar w pixels wide gives w); the segment's calibre is the
  median over its points, leaving out the points within one local radius + 1 px of a branch point
  (where the profile runs into the other vessels). ``calibre_weighted`` is the length-weighted mean
  of the segment calibres.
* **Tortuosity**, per segment of at least ``MIN_SEGMENT_FRACTION`` = 2 % of the FOV diameter
  (11 px on DRIVE's 540 px FOV; shorter segments, and closed ones -- free loops and rings that leave a
  branch point and come back to it -- are not scored): the **distance factor** arc /
  chord (Lotmar et al. 1979; 1 for a straight vessel); the **curvature tortuosity** integral of the
  squared curvature along the path divided by its length (Hart et al. 1999, "tau_5"-like;
  1/R^2 for a circular arc of radius R, in 1/px^2 or 1/mm^2); and the **tortuosity density**
  TD = (n - 1) / n * 1 / L * sum_i (L_i / C_i - 1) over the n sub-curves of constant curvature sign
  (split at inflection points), L_i and C_i their arc and chord, L the segment's length (Grisan et
  al., IEEE TMI 2008). Curvature is computed on the smoothed path resampled at 1 px steps, with
  Savitzky-Golay derivatives (cubic, ``CURVATURE_WINDOW`` = 21 px), leaving out one vessel width
  at each end (the blob of a branch point, the blunt tip) and half a window more where the filter
  would extrapolate (on segments long enough to spare it); curvature below
  ``INFLECTION_DEADBAND`` (radius > 200 px) does not change sign. Per image: the length-weighted
  mean of the scored segments.
* **Fractal dimension**, box counting (Minkowski-Bouligand): the FOV's bounding box is covered with
  a grid (centred on it, so that rotations and flips keep it) of boxes of side s = 2, 4, 8, ... up to the largest power of two not above a quarter of its
  shorter side; N(s) counts the boxes holding a vessel pixel; the dimension is minus the slope of
  the least-squares line of log N(s) against log s (Mandelbrot 1982; the box sizes as in Liew et al.
  2008's review of retinal FD). Of the mask (``fd_mask``) and of the centreline (``fd_centreline``).
* **Branching**: end points (skeleton pixels with one neighbour), branch points (clusters of pixels
  with three or more), segments. **Branching angle** at a branch point joining exactly three
  segments: the direction of each is that of its chord from two radii (distance transform at the
  branch point) out, past the blob where the vessels merge, to ``ANGLE_ARM_FRACTION`` = 1.5 % of the
  FOV diameter further (8 px on DRIVE, at least 5 px; a shorter segment: its whole chord); the two
  daughters are taken to be the pair with the smallest angle between them (the parent points away
  from both), and that angle is the branching angle (Zamir et al. 1979's angle between daughters). Crossings
  (four or more) are not scored.
* **Units**: pixels always. Micrometres when the scale is known: ``um_per_px`` given, or from the
  FOV's angular size: a field of ``fov_degrees`` spans ``fov_degrees * UM_PER_DEGREE`` micrometres
  of retina across the FOV's diameter, with ``UM_PER_DEGREE`` = 288 um per degree (Drasdo & Fowler
  1974, the Gullstrand schematic eye near the posterior pole; a 45 degree field is taken to span
  12.96 mm). Refraction and axial length change this by up to about 10 %; it is not corrected.
"""
import functools
import math

import numpy as np

from av import AV_COLUMNS
from disc import COLUMNS as DISC_COLUMNS

SMOOTH_WINDOW = 11
CURVATURE_WINDOW = 21
PROFILE_STEP = 0.5
MIN_SEGMENT_FRACTION = 0.02
ANGLE_ARM_FRACTION = 0.015
INFLECTION_DEADBAND = 1 / 200
UM_PER_DEGREE = 288.0

# the per-image columns, in order; the unit is in the name (px, um, mm, deg; no unit: a ratio or a count)
COLUMNS = [
    "image", "status", "note", "width_px", "height_px", "fov_source", "fov_area_px", "fov_diameter_px", "um_per_px",
    "vessel_area_density", "centreline_length_px", "centreline_length_mm", "length_density_per_px",
    "length_density_mm_per_mm2", "mean_calibre_px", "mean_calibre_um", "calibre_weighted_px", "calibre_weighted_um",
    "fd_mask", "fd_centreline", "distance_factor", "curvature_tortuosity_per_px2", "curvature_tortuosity_per_mm2",
    "tortuosity_density_per_px", "tortuosity_density_per_mm", "n_end_points", "n_branch_points", "n_segments",
    "n_segments_scored", "min_segment_px", "branching_angle_deg", "n_branching_angles",
]
# the measures proper, taken again in each zone around the optic disc
MEASURES = COLUMNS[COLUMNS.index("vessel_area_density"):]
# zones around the optic disc, from its centre in disc radii (ARIC / Hubbard et al. 1999, as in Knudtson et al.
# 2003: zone B the ring 0.5-1 disc diameter beyond the disc margin; zone C, as in SIVA and VAMPIRE, out to 2 disc
# diameters beyond the margin)
ZONES = {"zoneB": (2.0, 3.0), "zoneC": (2.0, 5.0)}
MIN_ZONE_INSIDE = 0.5  # a zone less than half inside the FOV is not measured
COLUMNS = COLUMNS + DISC_COLUMNS + ["zone_note"] + [f"{z}_{m}" for z in ZONES for m in MEASURES]
# filled when an artery/vein map is given (measure.py --av): CRAE, CRVE, AVR (av.py), then every measure of
# the arteries alone and of the veins alone over the FOV (the uncertain pixels in neither)
KINDS = {"artery": 1, "vein": 2}
COLUMNS = COLUMNS + AV_COLUMNS + [f"{k}_{m}" for k in KINDS for m in MEASURES]
# what each measure is called in words, and its unit, for tables people read (the web page)
LABELS = {
    "vessel_area_density": ("vessel area density (vessel pixels / FOV pixels)", ""),
    "centreline_length_px": ("centreline length", "px"), "centreline_length_mm": ("centreline length", "mm"),
    "length_density_mm_per_mm2": ("length density", "mm / mm²"),
    "mean_calibre_px": ("mean calibre (area / length)", "px"), "mean_calibre_um": ("mean calibre (area / length)", "µm"),
    "calibre_weighted_px": ("calibre across the vessel, length-weighted", "px"),
    "calibre_weighted_um": ("calibre across the vessel, length-weighted", "µm"),
    "fd_mask": ("fractal dimension of the mask (box counting)", ""),
    "fd_centreline": ("fractal dimension of the centreline (box counting)", ""),
    "distance_factor": ("tortuosity: distance factor (arc / chord)", ""),
    "curvature_tortuosity_per_px2": ("tortuosity: mean squared curvature", "1 / px²"),
    "tortuosity_density_per_px": ("tortuosity density (Grisan 2008)", "1 / px"),
    "n_end_points": ("end points", ""), "n_branch_points": ("branch points", ""), "n_segments": ("segments", ""),
    "branching_angle_deg": ("branching angle, mean", "°"),
    "disc_x_px": ("optic disc centre, x", "px"), "disc_y_px": ("optic disc centre, y", "px"),
    "disc_radius_px": ("optic disc radius", "px"), "disc_confidence": ("optic disc confidence (0-1)", ""),
    "laterality": ("eye (from the disc's side)", ""), "field": ("field", ""),
    "zoneB_calibre_weighted_px": ("zone B: calibre across the vessel, length-weighted", "px"),
    "zoneB_vessel_area_density": ("zone B: vessel area density", ""),
    "zoneC_fd_mask": ("zone C: fractal dimension of the mask", ""),
    "zoneC_distance_factor": ("zone C: tortuosity, distance factor", ""),
    "zoneC_tortuosity_density_per_px": ("zone C: tortuosity density", "1 / px"),
}


def readable(row):
    """(measure in words, value, unit) rows for a table people read: the measures that have a value."""
    out = []
    for key, (label, unit) in LABELS.items():
        v = row.get(key)
        if v is None:
            continue
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        out.append((label, text, unit))
    return out


SEGMENT_COLUMNS = [
    "image", "segment", "length_px", "chord_px", "calibre_px", "distance_factor", "curvature_tortuosity_per_px2",
    "tortuosity_density_per_px", "scored", "kind", "y0", "x0", "y1", "x1",
]


def add_scale_args(parser):
    """The measuring options shared by measure.py and predict.py --measure."""
    from cli import bounded

    g = parser.add_argument_group("measuring (measure.py, predict.py --measure)")
    scale = g.add_mutually_exclusive_group()
    scale.add_argument("--um-per-px", type=bounded(float, 0, lo_open=True), default=None,
                       help="the pixel size in micrometres: lengths in mm and calibres in um as well as in px")
    scale.add_argument("--fov-degrees", type=bounded(float, 1, 200), default=None,
                       help=f"the FOV's angular diameter (e.g. 45): the pixel size from the FOV diameter at "
                            f"{UM_PER_DEGREE:g} um per degree (a 45 degree field spans {45 * UM_PER_DEGREE / 1000:g} mm)")
    g.add_argument("--min-segment", type=bounded(float, 0), default=None,
                   help="shortest segment scored for tortuosity, px (default: 2%% of the FOV diameter)")
    g.add_argument("--segments", action="store_true", help="also write NAME_segments.csv: every vessel segment")
    g.add_argument("--overlay", action="store_true",
                   help="also write NAME_calibre.png and NAME_tortuosity.png: the centreline coloured by calibre "
                        "and by distance factor over the photograph")
    return g


def um_per_px_from_fov(fov_diameter_px, fov_degrees):
    """Micrometres per pixel of a photograph whose FOV diameter (px) spans ``fov_degrees``."""
    return fov_degrees * UM_PER_DEGREE / float(fov_diameter_px)


def fov_diameter(fov):
    """Diameter in pixels of the FOV (its width: robust to photographs cropped at top and bottom);
    the same figure the Segmenter rescales by."""
    from preprocess import fov_diameter as width

    return width(fov)


# --- geometry of one ordered path ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _savgol_weights(window, order, deriv):
    """scipy.signal.savgol_coeffs for the centre of the window and for every edge position (the
    polynomial fitted to the first / last ``window`` points, as savgol_filter's mode="interp")."""
    from scipy.signal import savgol_coeffs

    return np.stack([savgol_coeffs(window, order, deriv=deriv, pos=i, use="dot") for i in range(window)])


def savgol(points, window, order, deriv=0):
    """scipy's Savitzky-Golay filter (mode "interp") along a short path of points (N x 2), at a
    fraction of ``savgol_filter``'s per-call cost (the weights are computed once per window); the
    window shrinks to the path's length; None when the path is too short for the polynomial."""
    from scipy.ndimage import correlate1d

    n = len(points)
    w = min(window, n if n % 2 else n - 1)
    if w <= order:
        return None
    wts = _savgol_weights(w, order, deriv)
    half = w // 2
    x = points.astype(float)
    out = correlate1d(x, wts[half], axis=0, mode="nearest")
    out[:half] = wts[:half] @ x[:w]
    out[n - half:] = wts[half + 1:] @ x[n - w:]
    return out


def _smooth(points):
    out = savgol(points, SMOOTH_WINDOW, 2)
    return points.astype(float) if out is None else out


def arclength(points):
    """Cumulative length along a polyline, from 0 at its first point."""
    d = np.diff(points, axis=0)
    return np.concatenate(([0.0], np.cumsum(np.sqrt((d * d).sum(axis=1)))))


def polyline_length(points):
    if len(points) < 2:
        return 0.0
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


def _resample(points, step=1.0):
    """Points at equal arc-length steps along a polyline (the last point kept)."""
    d = arclength(points)
    if d[-1] <= 0:
        return points[:1]
    s = np.arange(0.0, d[-1], step)
    if d[-1] - s[-1] > 1e-9:
        s = np.r_[s, d[-1]]
    return np.column_stack([np.interp(s, d, points[:, 0]), np.interp(s, d, points[:, 1])])


def signed_curvature(points):
    """Signed curvature (1/px) at each point of a polyline sampled at 1 px steps."""
    d1 = savgol(points, CURVATURE_WINDOW, 3, deriv=1) if len(points) >= 5 else None
    if d1 is None:
        return np.zeros(len(points))
    d2 = savgol(points, CURVATURE_WINDOW, 3, deriv=2)
    num = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    den = np.maximum(np.hypot(d1[:, 0], d1[:, 1]) ** 3, 1e-12)
    return num / den


def tortuosity_density(points, kappa):
    """Grisan et al. 2008: (n-1)/n * 1/L * sum (L_i/C_i - 1) over the n constant-sign sub-curves."""
    length = polyline_length(points)
    if length <= 0:
        return 0.0
    sign = np.sign(kappa) * (np.abs(kappa) >= INFLECTION_DEADBAND)
    # a point inside the dead band keeps the sign before it (the first ones: the first sign after)
    nz = np.flatnonzero(sign)
    if nz.size == 0:
        return 0.0
    idx = np.maximum.accumulate(np.where(sign != 0, np.arange(len(sign)), 0))
    idx[:nz[0]] = nz[0]
    sign = sign[idx]
    cuts = np.flatnonzero(np.diff(sign)) + 1
    bounds = np.r_[0, cuts, len(points) - 1]
    n = len(bounds) - 1
    if n < 2:
        return 0.0
    s = arclength(points)
    arcs = s[bounds[1:]] - s[bounds[:-1]]  # each sub-curve's length along the path
    chords = np.hypot(*(points[bounds[1:]] - points[bounds[:-1]]).T)
    ok = chords > 0
    return float((n - 1) / n * np.sum(arcs[ok] / chords[ok] - 1.0) / length)


def cross_section_widths(mask_f, points, normals, radii):
    """Width of the vessel across each centreline point: the linearly interpolated mask integrated
    along the normal, outwards from the point until it reaches 0 on each side (px)."""
    from scipy.ndimage import map_coordinates

    reach = float(np.max(radii)) + 2.0
    t = np.arange(-reach, reach + PROFILE_STEP / 2, PROFILE_STEP)
    c = int(np.argmin(np.abs(t)))
    out = np.empty(len(points))
    for lo in range(0, len(points), 20000):  # bounded memory on large masks
        p, nrm = points[lo:lo + 20000], normals[lo:lo + 20000]
        ys = p[:, 0, None] + t[None] * nrm[:, 0, None]
        xs = p[:, 1, None] + t[None] * nrm[:, 1, None]
        s = map_coordinates(mask_f, [ys, xs], order=1, mode="constant", cval=0.0)
        right = s[:, c:]
        left = s[:, c::-1]
        keep_r = np.cumprod(right > 1e-6, axis=1)
        keep_l = np.cumprod(left > 1e-6, axis=1)
        out[lo:lo + 20000] = PROFILE_STEP * ((right * keep_r).sum(1) + (left * keep_l).sum(1) - s[:, c])
    return out


# --- the whole tree ------------------------------------------------------------------------------

def box_counting_dimension(mask, region=None):
    """Box-counting (Minkowski-Bouligand) dimension of a binary image and the box sizes used.

    region: bool mask whose bounding box is covered (default: the image's own foreground). Box sides 2, 4, 8,
    ... up to the largest power of two <= a quarter of the box's shorter side; None when fewer than
    three sizes fit or the image is empty.
    """
    mask = np.asarray(mask, bool)
    region = mask if region is None else region
    if region.any():
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = mask.shape
    sizes = [2 ** k for k in range(1, 32) if 2 ** k <= min(h, w) / 4]
    if len(sizes) < 3 or not mask.any():
        return None, sizes
    counts = []
    for s in sizes:
        ph, pw = -(-h // s) * s, -(-w // s) * s
        padded = np.zeros((ph, pw), bool)
        oy, ox = (ph - h) // 2, (pw - w) // 2  # the grid centred on the box: rotations and flips keep it
        padded[oy:oy + h, ox:ox + w] = mask
        counts.append(int(padded.reshape(ph // s, s, pw // s, s).any(axis=(1, 3)).sum()))
    slope = np.polyfit(np.log(sizes), np.log(counts), 1)[0]
    return float(-slope), sizes


def _empty_row():
    return {c: None for c in COLUMNS}


class Segment:
    __slots__ = ("points", "length", "chord", "calibre", "distance_factor", "curvature", "td", "scored", "kind",
                 "ends")


def measure_mask(mask, fov=None, um_per_px=None, fov_degrees=None, min_segment_px=None, fov_source=None,
                 want_segments=True, fov_diameter_px=None):
    """Every measure of one vessel mask; returns (row dict with COLUMNS, list of Segment, centreline).

    mask: bool HxW (vessel); fov: bool HxW (default: the whole image). um_per_px, or fov_degrees,
    give micrometres; min_segment_px overrides the shortest segment scored for tortuosity
    (default MIN_SEGMENT_FRACTION of the FOV diameter); fov_diameter_px: the diameter the lengths that
    scale with the photograph are taken from (default: the FOV's; a zone passes its photograph's). Never raises on a blank or odd mask: the
    values it cannot give are None and ``note`` says why.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    h, w = mask.shape
    row = _empty_row()
    notes = []
    if fov is None:
        fov = np.ones_like(mask)
        fov_source = fov_source or "whole image"
    fov = np.asarray(fov, bool)
    if fov.shape != mask.shape:
        raise ValueError(f"the FOV is {fov.shape[1]}x{fov.shape[0]} but the mask {w}x{h}")
    if not fov.any():
        fov = np.ones_like(mask)
        fov_source = "whole image (the FOV was empty)"
        notes.append("no FOV found: measured over the whole image")
    vessel = mask & fov
    fov_area = int(fov.sum())
    diam = fov_diameter(fov) if fov_diameter_px is None else float(fov_diameter_px)
    if um_per_px is None and fov_degrees is not None:
        um_per_px = um_per_px_from_fov(diam, fov_degrees)
    min_len = float(min_segment_px) if min_segment_px is not None else MIN_SEGMENT_FRACTION * diam
    arm = max(5.0, ANGLE_ARM_FRACTION * diam)
    row.update(width_px=w, height_px=h, fov_source=fov_source or "given", fov_area_px=fov_area,
               fov_diameter_px=round(diam, 1), um_per_px=um_per_px, min_segment_px=round(min_len, 2))
    area = int(vessel.sum())
    row["vessel_area_density"] = area / fov_area
    # the rest works on the FOV's bounding box (1 px margin): the same figures in less time and memory
    rows, cols = np.flatnonzero(fov.any(1)), np.flatnonzero(fov.any(0))
    y0, x0 = max(int(rows[0]) - 1, 0), max(int(cols[0]) - 1, 0)
    full_shape = (h, w)
    vessel, fov = vessel[y0:rows[-1] + 2, x0:cols[-1] + 2], fov[y0:rows[-1] + 2, x0:cols[-1] + 2]
    h, w = vessel.shape

    def uncrop(segments, skel):
        for seg in segments:
            seg.points = seg.points + (y0, x0)
        out = np.zeros(full_shape, bool)
        out[y0:y0 + h, x0:x0 + w] = skel
        return segments, out

    skel = skeletonize(vessel)
    # a centreline pixel with no neighbour (a dot of a vessel) has no length and no direction: skan's
    # graph has no edge for it (and fails on a skeleton of dots alone)
    skel &= ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") > 1
    if area == 0 or not skel.any():
        row.update(centreline_length_px=0.0, length_density_per_px=0.0, n_end_points=0, n_branch_points=0,
                   n_segments=0, n_segments_scored=0, status="empty")
        notes.append("no vessel pixels inside the FOV: nothing else to measure" if area == 0 else
                     "only isolated dots inside the FOV, no centreline longer than a pixel: nothing else to measure")
        return (_finish(row, notes, um_per_px), *uncrop([], skel))

    edt = ndi.distance_transform_edt(vessel)
    sk = _skeleton_graph(skel, edt)
    skel = np.asarray(sk.skeleton_image, bool)
    # neighbours of each skeleton pixel (8-connectivity)
    nb = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    nb[~skel] = 0
    ends = skel & (nb == 1)
    junction = skel & (nb >= 3)
    jlabels, n_junctions = ndi.label(junction, structure=np.ones((3, 3)))
    row["n_end_points"] = int(ends.sum())
    row["n_branch_points"] = int(n_junctions)

    mask_f = vessel.astype(np.float32)
    segments = _segments(sk, jlabels, ends, edt, min_len, mask_f)
    row["n_segments"] = len(segments)

    # calibre across the vessel, all segments' points at once
    pts, nrm, rad, owner, inner = [], [], [], [], []
    for i, seg in enumerate(segments):
        p = seg.points
        tan = np.gradient(p, axis=0) if len(p) > 1 else np.array([[0.0, 1.0]])
        tan /= np.maximum(np.hypot(tan[:, 0], tan[:, 1]), 1e-12)[:, None]
        r = edt[np.clip(np.round(p[:, 0]).astype(int), 0, h - 1), np.clip(np.round(p[:, 1]).astype(int), 0, w - 1)]
        s = arclength(p)
        keep = np.ones(len(p), bool)
        if seg.ends[0] == "junction":
            keep &= s > r + 1
        if seg.ends[1] == "junction":
            keep &= s[-1] - s > r + 1
        if not keep.any():
            keep[:] = True
        pts.append(p)
        nrm.append(np.column_stack([-tan[:, 1], tan[:, 0]]))
        rad.append(r)
        owner.append(np.full(len(p), i))
        inner.append(keep)
    widths = cross_section_widths(mask_f, np.concatenate(pts), np.concatenate(nrm), np.concatenate(rad))
    owner, inner = np.concatenate(owner), np.concatenate(inner)
    for i, seg in enumerate(segments):
        wi = widths[(owner == i) & inner]
        seg.calibre = float(np.median(wi)) if wi.size else None

    lengths = np.array([s.length for s in segments])
    total = float(lengths.sum())
    row["centreline_length_px"] = total
    row["length_density_per_px"] = total / fov_area
    row["mean_calibre_px"] = area / total if total > 0 else None
    cal = [(s.calibre, s.length) for s in segments if s.calibre is not None and s.length > 0]
    if cal:
        c, l = np.array(cal).T
        row["calibre_weighted_px"] = float((c * l).sum() / l.sum())
    row["fd_mask"], sizes = box_counting_dimension(vessel, fov)
    row["fd_centreline"], _ = box_counting_dimension(skel, fov)
    if row["fd_mask"] is None:
        notes.append(f"FOV too small for box counting (needs at least 3 box sizes from 2 px; fit: {sizes})")
    scored = [s for s in segments if s.scored]
    row["n_segments_scored"] = len(scored)
    if scored:
        l = np.array([s.length for s in scored])
        row["distance_factor"] = float((np.array([s.distance_factor for s in scored]) * l).sum() / l.sum())
        row["curvature_tortuosity_per_px2"] = float((np.array([s.curvature for s in scored]) * l).sum() / l.sum())
        row["tortuosity_density_per_px"] = float((np.array([s.td for s in scored]) * l).sum() / l.sum())
    else:
        notes.append(f"no segment of at least {min_len:.1f} px: tortuosity not scored")
    angles = _branching_angles(segments, jlabels, edt, arm)
    row["n_branching_angles"] = len(angles)
    if angles:
        row["branching_angle_deg"] = float(np.mean(angles))
    else:
        notes.append("no branch point joining exactly three segments: no branching angle")
    row["status"] = "ok"
    return (_finish(row, notes, um_per_px), *uncrop(segments if want_segments else [], skel))


def _finish(row, notes, um_per_px):
    if um_per_px:
        mm = um_per_px / 1000.0
        for px, um, factor in (("centreline_length_px", "centreline_length_mm", mm),
                               ("length_density_per_px", "length_density_mm_per_mm2", 1 / mm),
                               ("mean_calibre_px", "mean_calibre_um", um_per_px),
                               ("calibre_weighted_px", "calibre_weighted_um", um_per_px),
                               ("curvature_tortuosity_per_px2", "curvature_tortuosity_per_mm2", 1 / mm ** 2),
                               ("tortuosity_density_per_px", "tortuosity_density_per_mm", 1 / mm)):
            if row[px] is not None:
                row[um] = row[px] * factor
    else:
        notes.append("no scale given (--um-per-px or --fov-degrees): pixels only")
    row["note"] = "; ".join(notes)
    return row


def zone_masks(shape, disc):
    """{zone name: bool mask of its ring} around a found disc (a dict with disc_x_px, disc_y_px, disc_radius_px)."""
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    d = np.hypot(yy - disc["disc_y_px"], xx - disc["disc_x_px"]) / disc["disc_radius_px"]
    return {name: (d >= a) & (d <= b) for name, (a, b) in ZONES.items()}


def measure_with_zones(mask, fov=None, photo=None, disc=None, **kw):
    """measure_mask, then the optic disc (found in ``photo`` by disc.find_disc, or given as ``disc``) and
    every measure again inside zones B and C (and the FOV), with the whole FOV's scale and shortest scored
    segment; -> (row, segments, centreline) as measure_mask. Without a photograph, a found disc, or a zone
    mostly inside the FOV, the zone columns are empty and ``zone_note`` says why."""
    mask = np.asarray(mask, bool)
    row, segs, skel = measure_mask(mask, fov, **kw)
    fov = np.ones_like(mask) if fov is None or not np.asarray(fov).any() else np.asarray(fov, bool)
    if disc is None:
        from disc import find_disc, not_found

        disc = not_found("no photograph: the disc is found in the photograph (give --photos)") \
            if photo is None or photo.shape[:2] != mask.shape else find_disc(photo, mask, fov)
    row.update({k: disc.get(k) for k in DISC_COLUMNS})
    notes = []
    if not disc.get("disc_found"):
        notes.append(f"zones not measured: no disc ({disc.get('disc_note')})")
    else:
        for name, ring in zone_masks(mask.shape, disc).items():
            inside = ring & fov
            share = inside.sum() / max(int(ring.sum()), 1)
            if share < MIN_ZONE_INSIDE:
                notes.append(f"{name} not measured: only {100 * share:.0f} % of it lies inside the FOV")
                continue
            zone, _, _ = measure_mask(mask, inside, um_per_px=row["um_per_px"], min_segment_px=row["min_segment_px"],
                                      fov_source=name, want_segments=False, fov_diameter_px=row["fov_diameter_px"])
            row.update({f"{name}_{m}": zone[m] for m in MEASURES})
            notes += [f"{name}: {n}" for n in zone["note"].split("; ") if n and not n.startswith("no scale given")]
    row["zone_note"] = "; ".join(notes)
    return row, segs, skel


def _spurs(sk, edt):
    """Paths from a branch point to a free end no longer than the vessel's width at the branch point
    (twice the distance transform there): thinning artefacts at corners and bumps of the mask, not
    vessels (a real branch leaves its parent's width before it can end)."""
    deg = sk.degrees
    out = []
    for i in range(sk.n_paths):
        ids = sk.path(i)
        a, b = deg[ids[0]], deg[ids[-1]]
        if sorted((min(a, 3), min(b, 3))) != [1, 3]:
            continue
        j = ids[0] if a >= 3 else ids[-1]
        y, x = np.round(sk.coordinates[j]).astype(int)
        c = sk.coordinates[ids]
        if polyline_length(c) <= 2 * edt[y, x]:
            out.append(i)
    return out


def _skeleton_graph(skel, edt):
    """skan's graph of the centreline, with the thinning's spurs pruned (one pass)."""
    from skan import Skeleton

    sk = Skeleton(skel)
    spurs = _spurs(sk, edt)
    return sk.prune_paths(spurs) if spurs else sk


def _trim_ends(raw, ends, r, s):
    """The path without the points within one vessel width (twice the segment's median distance
    transform) of the ends named in ``ends`` (both: booleans), when the path is long enough to spare
    them. Thinning bends a centreline into a corner of a vessel's blunt end, and towards the middle
    of the blob where vessels meet at a branch point: neither is the vessel's course. ``r``: the
    segment's median distance transform; ``s``: the path's arclength."""
    keep = np.ones(len(raw), bool)
    if ends[0]:
        keep &= s >= 2 * r
    if ends[1]:
        keep &= s[-1] - s >= 2 * r
    return raw[keep] if keep.sum() >= max(3, len(raw) // 2) else raw


def _extend_to_tip(p, mask_f, step=0.25):
    """Extend a path whose first point is a free end along its direction to where the vessel ends
    (the linearly interpolated mask falls below 0.5: the pixel boundary of a binary mask)."""
    from scipy.ndimage import map_coordinates

    if len(p) < 2:
        return p
    s = arclength(p)
    j = min(int(np.searchsorted(s, 5.0)), len(p) - 1)
    d = p[0] - p[j]
    n = np.hypot(*d)
    if n == 0:
        return p
    d = d / n
    t = np.arange(0.0, 40.0, step)
    v = map_coordinates(mask_f, [p[0, 0] + t * d[0], p[0, 1] + t * d[1]], order=1, mode="constant", cval=0.0)
    out = np.flatnonzero(v < 0.5)
    if out.size == 0 or out[0] == 0:
        return p
    i = out[0]  # the crossing lies between samples i-1 and i
    frac = (v[i - 1] - 0.5) / max(v[i - 1] - v[i], 1e-9)
    tip = p[0] + (t[i - 1] + frac * step) * d
    return np.vstack([tip, p])


def _segments(sk, jlabels, ends, edt, min_len, mask_f):
    """The skeleton's segments, each with its smoothed ordered points and per-segment measures."""
    coords = sk.coordinates
    out = []
    for i in range(sk.n_paths):
        raw = coords[sk.path(i)].astype(float)
        ry, rx = raw[:, 0].astype(int), raw[:, 1].astype(int)
        jl = jlabels[ry, rx]
        if len(raw) <= 3 and (jl > 0).all() and len(set(jl.tolist())) == 1:
            continue  # inside one cluster of branch-point pixels
        kinds = []
        for k in (0, -1):
            kinds.append("junction" if jl[k] > 0 else "end" if ends[ry[k], rx[k]] else "loop")
        r = float(np.median(edt[ry, rx]))
        s = arclength(raw)
        p = _smooth(_trim_ends(raw, [k == "end" for k in kinds], r, s))
        for k in (0, 1):
            if kinds[k] == "end":
                p = _extend_to_tip(p if k == 0 else p[::-1], mask_f)
                p = p if k == 0 else p[::-1]
        seg = Segment()
        seg.points = p
        seg.kind = "-".join(kinds)
        seg.ends = kinds
        seg.length = polyline_length(p)
        seg.chord = float(np.hypot(*(p[-1] - p[0])))
        seg.calibre = None
        # a path that leaves a branch point and comes back to it (a ring on a vessel) is closed, like a
        # free loop: arc / chord is not defined for it (its chord is a fraction of a pixel)
        closed = kinds[0] == "loop" or (jl[0] > 0 and jl[0] == jl[-1])
        seg.scored = seg.length >= min_len and seg.chord > 0 and not closed
        if seg.scored:
            # curvature along the vessel's course: not along the straight continuations to the tips,
            # nor inside the blobs at branch points
            even = _resample(_smooth(_trim_ends(raw, [k != "loop" for k in kinds], r, s)))
            kappa = signed_curvature(even)
            h = CURVATURE_WINDOW // 2  # the filters' edges extrapolate: keep the points with a full window
            if len(even) >= 4 * h:
                even, kappa = even[h:-h], kappa[h:-h]
            core_length = polyline_length(even)
            seg.distance_factor = seg.length / seg.chord
            seg.curvature = float(np.sum(kappa[:-1] ** 2 * np.hypot(*np.diff(even, axis=0).T)) / core_length) \
                if core_length > 0 else 0.0
            seg.td = tortuosity_density(even, kappa)
        else:
            seg.distance_factor = seg.length / seg.chord if seg.chord > 0 and not closed else None
            seg.curvature = seg.td = None
        out.append(seg)
    return out


def _branching_angles(segments, jlabels, edt, arm):
    """Angle (degrees) between the two daughters at each branch point joining exactly three segments.

    Each segment's direction is that of its chord from two junction radii out (past the blob where
    the vessels merge, which bends the centreline) to ``arm`` further; a shorter segment: its whole chord.
    """
    arms = {}
    for seg in segments:
        p = seg.points
        for k in (0, 1):
            if seg.ends[k] != "junction":
                continue
            q = p if k == 0 else p[::-1]
            y, x = int(round(q[0, 0])), int(round(q[0, 1]))
            lab = int(jlabels[y, x])
            if lab == 0:
                continue
            s = arclength(q)
            a = 2.0 * float(edt[y, x])
            if s[-1] < a + arm:
                a = 0.0
            i = min(int(np.searchsorted(s, a)), len(q) - 1)
            j = min(int(np.searchsorted(s, a + arm)), len(q) - 1)
            d = q[j] - q[i]
            if np.hypot(*d) > 0:
                arms.setdefault(lab, []).append(d / np.hypot(*d))
    angles = []
    for vecs in arms.values():
        if len(vecs) != 3:
            continue
        best = min(math.degrees(math.acos(float(np.clip(np.dot(vecs[a], vecs[b]), -1, 1))))
                   for a, b in ((0, 1), (0, 2), (1, 2)))
        angles.append(best)
    return angles


def segment_rows(name, segments):
    """The --segments CSV rows of one image (coordinates of the end points in pixels, y then x)."""
    rows = []
    for i, s in enumerate(segments):
        rows.append({"image": name, "segment": i, "length_px": s.length, "chord_px": s.chord, "calibre_px": s.calibre,
                     "distance_factor": s.distance_factor, "curvature_tortuosity_per_px2": s.curvature,
                     "tortuosity_density_per_px": s.td, "scored": int(s.scored), "kind": s.kind,
                     "y0": round(float(s.points[0, 0]), 1), "x0": round(float(s.points[0, 1]), 1),
                     "y1": round(float(s.points[-1, 0]), 1), "x1": round(float(s.points[-1, 1]), 1)})
    return rows


# --- files: one JSON per image, the table, segments and overlays (measure.py, predict.py --measure) ---

def _clean(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


def failed_row(name, reason, **known):
    """The row of an image that could not be measured: every value empty, the reason in ``note``."""
    row = _empty_row()
    row.update(known, image=name, status="failed", note=reason)
    return row


def _colour_overlay(background, segments, values, lo, hi, thickness, label):
    """The centreline drawn over ``background`` (uint8 HxWx3), each segment coloured by its value
    (OpenCV's viridis map from ``lo`` to ``hi``; gray: no value), with a colour bar and its range."""
    import cv2

    out = background.copy()
    for seg, v in zip(segments, values):
        if v is None:
            colour = (160, 160, 160)
        else:
            t = int(np.clip((v - lo) / max(hi - lo, 1e-9), 0, 1) * 255)
            colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[t]]), cv2.COLORMAP_VIRIDIS)[0, 0][::-1])
        pts = np.round(seg.points[:, ::-1] * 4).astype(np.int32)  # x, y with 2 fractional bits
        cv2.polylines(out, [pts], False, colour, thickness, cv2.LINE_AA, shift=2)
    h, w = out.shape[:2]
    bw, bh = max(w // 4, 60), max(h // 60, 8)
    bar = cv2.applyColorMap(np.tile(np.linspace(0, 255, bw).astype(np.uint8), (bh, 1)), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    y0, x0 = h - 3 * bh, w - bw - bh
    if y0 > 0 and x0 > 0:
        out[y0:y0 + bh, x0:x0 + bw] = bar
        scale = max(bh / 20, 0.35)
        cv2.putText(out, f"{label} {lo:.3g} - {hi:.3g}", (x0, max(y0 - bh // 2, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), max(1, bh // 10), cv2.LINE_AA)
    return out


def draw_zones(image, disc, thickness):
    """A copy of ``image`` (uint8 RGB) with the found ``disc`` (a row with its columns) and the rings of
    zones B and C drawn in white."""
    import cv2

    out = image.copy()
    centre = (int(round(disc["disc_x_px"] * 4)), int(round(disc["disc_y_px"] * 4)))  # 2 fractional bits
    for k in sorted({1.0} | {r for ring in ZONES.values() for r in ring}):
        cv2.circle(out, centre, int(round(k * disc["disc_radius_px"] * 4)), (255, 255, 255), thickness, cv2.LINE_AA,
                   shift=2)
    return out


def overlays(segments, mask, photo=None, disc=None):
    """(calibre overlay, tortuosity overlay) as uint8 RGB images over the photograph (or the mask, dimmed);
    with a found ``disc`` (a row with its columns), the disc and the rings of zones B and C drawn in white."""
    if photo is not None and photo.shape[:2] == mask.shape:
        bg = np.dstack([photo] * 3) if photo.ndim == 2 else photo.copy()
    else:
        bg = np.dstack([np.where(mask, 70, 0).astype(np.uint8)] * 3)
    thick = max(1, int(round(max(mask.shape) / 700)))
    cal = [s.calibre for s in segments]
    known = np.array([(s.calibre, s.length) for s in segments if s.calibre is not None]).reshape(-1, 2)
    # the colour scale ends at the 98th percentile of calibre along the vessels (weighted by length: the
    # short odd segments inside the optic disc do not stretch it)
    hi = 1.0
    if len(known):
        c, l = known[np.argsort(known[:, 0])].T
        hi = float(c[min(np.searchsorted(np.cumsum(l), 0.98 * l.sum()), len(c) - 1)])
    if disc is not None and disc.get("disc_found"):
        bg = draw_zones(bg, disc, thick)
    by_calibre = _colour_overlay(bg, segments, cal, 0.0, hi, thick, "calibre px")
    df = [s.distance_factor if s.scored else None for s in segments]
    by_tortuosity = _colour_overlay(bg, segments, df, 1.0, 1.3, thick, "distance factor")
    return by_calibre, by_tortuosity


def image_files(folder, name):
    """Paths of the per-image outputs of ``name`` in ``folder``: json, segments csv, two overlays."""
    from pathlib import Path

    folder = Path(folder)
    return {"json": folder / f"{name}_measurements.json", "segments": folder / f"{name}_segments.csv",
            "calibre": folder / f"{name}_calibre.png", "tortuosity": folder / f"{name}_tortuosity.png"}


def measure_and_write(name, mask, folder, fov=None, fov_source=None, photo=None, um_per_px=None, fov_degrees=None,
                      min_segment_px=None, segments=False, overlay=False, disc=None, av_classes=None):
    """Measure one mask and write its JSON (always; atomically), and on request its segments CSV and
    overlays, into ``folder``; returns the row. ``av_classes``: the photograph's artery/vein map (av.py's
    values), for CRAE, CRVE and AVR in zone B."""
    from imio import write_csv, write_png

    row, segs, _ = measure_with_zones(mask, fov, photo=photo, disc=disc, um_per_px=um_per_px, fov_degrees=fov_degrees,
                                      min_segment_px=min_segment_px, fov_source=fov_source)
    if av_classes is not None:
        from av import measure_av

        whole = np.ones(np.shape(mask), bool) if fov is None else np.asarray(fov, bool)
        row.update(measure_av(av_classes, whole, row, um_per_px=row["um_per_px"]))
        for kind, k in KINDS.items():
            one, _, _ = measure_mask(np.asarray(av_classes) == k, whole, um_per_px=row["um_per_px"],
                                     min_segment_px=row["min_segment_px"], fov_source=kind, want_segments=False,
                                     fov_diameter_px=row["fov_diameter_px"])
            row.update({f"{kind}_{m}": one[m] for m in MEASURES})
    row["image"] = name
    paths = image_files(folder, name)
    if segments:
        write_csv(paths["segments"], [{k: _clean(v) for k, v in r.items()} for r in segment_rows(name, segs)],
                  SEGMENT_COLUMNS)
    if overlay:
        by_calibre, by_tortuosity = overlays(segs, np.asarray(mask, bool) & (fov if fov is not None else True), photo,
                                             disc=row)
        write_png(paths["calibre"], by_calibre)
        write_png(paths["tortuosity"], by_tortuosity)
    write_json(paths["json"], row)
    return row


def write_json(path, row):
    import json

    from imio import atomic_replace

    doc = {"measurements": {k: _clean(row.get(k)) for k in COLUMNS},
           "definitions": "see the docstring of morphometry.py and the README's 'Measuring the vessel tree'"}

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)

    atomic_replace(path, write, suffix=".json")


def read_json(path):
    """The row stored by ``measure_and_write`` (None when the file is missing or unreadable)."""
    import json

    try:
        with open(path) as f:
            return json.load(f)["measurements"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_table(path, rows):
    """The per-image table: one row per image in COLUMNS order, atomically."""
    from imio import write_csv

    write_csv(path, [{k: _clean(r.get(k)) for k in COLUMNS} for r in rows], COLUMNS)
