"""The optic disc: where it is in a fundus photograph, how large, and what follows from it (the eye's
side, the kind of field). A classical locator, no network and no PyTorch: it runs in the light install.

How it is found (every length in units of the FOV diameter D, so the same at any photograph size;
the photograph is first brought to a working scale where D = ``WORK_D`` = 256 px):

1. **Brightness**: the disc is the brightest compact region of the fundus. The luminance (ITU-R 601)
   inside the FOV (eroded by 2 % of D, the rim's glare), minus its background (Gaussian, sigma 0.15 D),
   smoothed at the disc's scale (Gaussian, sigma 0.035 D), divided by its spread (standard deviation
   inside the FOV).
2. **Vessel convergence**: the large vessels all enter the eye at the disc. The vessel mask (the
   Segmenter's) weighted by the vessel's width (its distance transform: wide vessels count most),
   smoothed at twice the disc's scale (sigma 0.07 D), divided by its spread.
3. The candidate is the maximum of brightness + convergence (``VESSEL_WEIGHT`` = 1).
4. **The disc region**: around the candidate, the brightness (smoothed at 0.012 D, the dark vessels
   closed over with a 0.03 D grey closing) above the surround (the median of the ring 0.16-0.22 D
   away) by ``REGION_LEVEL`` = 0.3 of the disc's own contrast (its 90th percentile within 0.06 D):
   the connected region holding the candidate; its centroid is a first centre. **Radius**: the
   region's edge is unsure (a dim disc has no clear step) while discs vary little in size against the FOV (10th-90th
   percentile of the references: 0.069-0.086 D on DRIVE, 0.080-0.100 D on DRIONS-DB), so the
   radius of a circle of the region's area (kept within 0.04-0.12 D) is shrunk towards the typical
   ``RADIUS_PRIOR`` = 0.0845 D: exp(w ln r_region + (1 - w) ln r_prior), w = ``RADIUS_WEIGHT`` =
   0.25. A camera with a much narrower or wider field than 45-50 degrees makes the prior wrong.
5. **The centre**: a circle of that radius is fitted to the brightness with the vessels painted
   out (``cv2.inpaint``, Telea's method, over the vessel mask; smoothed at 0.012 D): among the
   centres within one radius of the first, the one whose circle is brightest against the ring
   around it (1 to ``FIT_OUTER`` = 1.3 radii), at least half of the circle inside the FOV: a
   circular matched filter, which weighs the whole disc where a centroid follows its brightest
   part (the pale cup lies on the disc's temporal side). It is then moved ``TRUNK_WEIGHT`` = 0.15
   of the way towards the convergence peak within the disc (where the vessel trunk enters).
   REGION_LEVEL, RADIUS_PRIOR, RADIUS_WEIGHT, FIT_OUTER and TRUNK_WEIGHT were chosen on DRIVE
   training and DRIONS-DB 001-060 (see the README).
6. **Confidence** (0-1): how far the best candidate stands above the best one outside twice the
   disc radius, relative to the spread of the score: ``1 - exp(-margin / CONFIDENCE_SCALE)``.
   Below ``MIN_CONFIDENCE`` the disc is reported as not found (two equal candidates, a photograph
   without a disc).

What follows: **field** "disc-centred" when the centre lies within 0.15 D of the FOV's centre,
else "macula-centred". **Laterality** of a macula-centred photograph: the disc lies on the nasal
side, which in a photograph of a right eye (OD) is the viewer's right, of a left eye (OS) the
viewer's left; "unknown" for a disc-centred photograph or when the disc was not found. (The
photographs must not be mirrored; some cameras flip them.)
"""
import math
import threading
from pathlib import Path

import numpy as np

WORK_D = 256  # FOV diameter at the working scale, px
VESSEL_WEIGHT = 1.0
MIN_CONFIDENCE = 0.2
CONFIDENCE_SCALE = 1.0
DISC_CENTRED_WITHIN = 0.15  # of D
RADIUS_RANGE = (0.04, 0.12)  # of D
REGION_LEVEL = 0.3
TRUNK_WEIGHT = 0.15
FIT_OUTER = 1.3  # the ring around the fitted circle, in radii
RADIUS_PRIOR = 0.0845  # of D: the median disc radius of DRIVE training and DRIONS-DB 001-060
RADIUS_WEIGHT = 0.25  # of the measured region's radius, on a log scale; the rest is RADIUS_PRIOR

COLUMNS = ["disc_found", "disc_x_px", "disc_y_px", "disc_radius_px", "disc_confidence", "laterality", "field",
           "disc_note"]


def _gauss(img, sigma):
    import cv2

    return cv2.GaussianBlur(img, (0, 0), max(sigma, 0.5))


def _z(img, inside):
    v = img[inside]
    sd = float(v.std()) if v.size else 0.0
    return (img - float(v.mean())) / sd if sd > 0 else np.zeros_like(img)


def not_found(note):
    """The COLUMNS of a photograph whose disc was not found, with the reason."""
    out = dict.fromkeys(COLUMNS)
    out.update(disc_found=False, laterality="unknown", field="unknown", disc_note=note)
    return out


def describe(x, y, radius, confidence, fov, note="", min_confidence=MIN_CONFIDENCE):
    """The COLUMNS of a disc at (x, y) with ``radius`` (photograph pixels): found when ``confidence``
    reaches ``min_confidence``; the field and the eye's side from where it lies in the FOV."""
    from preprocess import fov_diameter

    out = dict.fromkeys(COLUMNS)
    cols, rows = np.flatnonzero(fov.any(axis=0)), np.flatnonzero(fov.any(axis=1))
    fx, fy = (cols[0] + cols[-1]) / 2, (rows[0] + rows[-1]) / 2
    field = "disc-centred" if math.hypot(x - fx, y - fy) <= DISC_CENTRED_WITHIN * fov_diameter(fov) else \
        "macula-centred"
    found = confidence >= min_confidence
    out.update(disc_found=found, disc_x_px=round(float(x), 1), disc_y_px=round(float(y), 1),
               disc_radius_px=round(float(radius), 1), disc_confidence=round(float(confidence), 3),
               field=field if found else "unknown")
    if not found:
        out.update(laterality="unknown", disc_note=note or f"no clear disc (confidence {confidence:.2f} < "
                                                           f"{min_confidence})")
    elif field == "disc-centred":
        out.update(laterality="unknown", disc_note="disc-centred photograph: the side of the eye is not told by the disc")
    else:
        out.update(laterality="right (OD)" if x > fx else "left (OS)", disc_note="")
    return out


def find_disc(image, vessels, fov, locator=None, trace=None):
    """The optic disc of one photograph: a dict with COLUMNS (centre and radius in the photograph's
    pixels). ``image``: uint8 HxWx3 or HxW; ``vessels``: bool HxW vessel mask; ``fov``: bool HxW.
    ``locator``: a DiscNet, or "classical" (default: the shipped DISC.onnx when it is there).
    ``trace``: a dict that receives the classical locator's stages (for the step-by-step view)."""
    from preprocess import fov_diameter

    if not fov.any() or fov_diameter(fov) < 32:
        return not_found("no field of view found")
    locator = default_locator() if locator is None else locator
    if locator == "classical":
        return find_disc_classical(image, vessels, fov, trace)
    return locator.find(image, fov)


DISC_WEIGHTS = Path(__file__).resolve().parent / "DISC.onnx"
NET_MIN_CONFIDENCE = 0.6
_DEFAULT = {}
_LOCK = threading.Lock()


def default_locator():
    """The shipped disc network (DISC.onnx beside this module, loaded once), else the classical locator."""
    with _LOCK:
        if "locator" not in _DEFAULT:
            _DEFAULT["locator"] = DiscNet.from_file(DISC_WEIGHTS) if DISC_WEIGHTS.is_file() else "classical"
        return _DEFAULT["locator"]


class DiscNet:
    """The disc as a segmentation: a U-Net trained by ``train.py --dataset DISC`` on the references that
    ``prepare_data.py --dataset DISC`` lays out, run by the same Segmenter as the vessel models (so
    rescaled by the FOV, tiled, ONNX or PyTorch). The disc is the connected region above the model's
    threshold holding the most probability; its centre the region's centroid, its radius that of a
    circle of its area. Confidence: the region's highest probability times its share of all the
    probability above the threshold (two equal candidates: 0.5 at most); found from
    ``NET_MIN_CONFIDENCE``."""

    def __init__(self, segmenter):
        self.seg = segmenter

    @classmethod
    def from_file(cls, path):
        from inference import Segmenter

        return cls(Segmenter.from_file(path))

    def find(self, image, fov):
        from scipy import ndimage as ndi

        prob = self.seg.probability(image, fov)
        lab, n = ndi.label((prob >= self.seg.threshold) & fov)
        if n == 0:
            return not_found("no disc: the disc model finds no region above its threshold")
        mass = np.asarray(ndi.sum(prob, lab, index=np.arange(1, n + 1)))
        best = int(np.argmax(mass)) + 1
        region = lab == best
        ys, xs = np.nonzero(region)
        confidence = float(prob[region].max()) * float(mass[best - 1] / mass.sum())
        return describe(xs.mean(), ys.mean(), math.sqrt(region.sum() / math.pi), confidence, fov,
                        min_confidence=NET_MIN_CONFIDENCE)


def find_disc_classical(image, vessels, fov, trace=None):
    """The classical locator (brightness and vessel convergence; the module's docstring, steps 1-6).
    ``trace``: a dict that receives its stages at the working scale (brightness, convergence, score,
    region, the circle fit) and the working scale itself; the result does not change."""
    from scipy import ndimage as ndi

    from preprocess import fov_diameter, rescale

    k = WORK_D / fov_diameter(fov)
    img = image if image.ndim == 2 else (image[..., :3].astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))
    lum = rescale(img.astype(np.float32), k)
    f = rescale(fov, k)
    v = rescale(vessels & fov, k)
    core = ndi.binary_erosion(f, iterations=max(1, int(0.02 * WORK_D)))
    if core.sum() < 100:
        return not_found("field of view too small")
    # brightness against its background, inside the FOV (the outside filled with the FOV's mean)
    fill = np.where(core, lum, float(lum[core].mean())).astype(np.float32)
    bright = _gauss(fill, 0.035 * WORK_D) - _gauss(fill, 0.15 * WORK_D)
    # vessel convergence: width-weighted vessel density
    width = ndi.distance_transform_edt(v).astype(np.float32)
    converge = _gauss(width, 0.07 * WORK_D)
    score = _z(bright, core) + VESSEL_WEIGHT * _z(converge, core)
    score[~core] = -np.inf
    if trace is not None:
        trace.update(scale=k, brightness=np.where(core, bright, np.nan), convergence=np.where(core, converge, np.nan),
                     score=np.where(core, score, np.nan))
    cy, cx = np.unravel_index(int(np.argmax(score)), score.shape)
    # the disc region: around the candidate, the pixels brighter than the surround by REGION_LEVEL of the
    # disc's own contrast, vessels closed over; its centroid is the centre, the radius that of its area
    yy, xx = np.mgrid[:score.shape[0], :score.shape[1]]
    sm = _gauss(fill, 0.012 * WORK_D)
    sm = ndi.grey_closing(sm, size=int(0.03 * WORK_D) | 1)  # vessels crossing the disc are dark: close them
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    near = core & (d2 <= (0.06 * WORK_D) ** 2)
    ring = core & (d2 >= (0.16 * WORK_D) ** 2) & (d2 <= (0.22 * WORK_D) ** 2)
    peak = float(np.percentile(sm[near], 90))
    base = float(np.median(sm[ring])) if ring.any() else float(np.median(sm[core]))
    region = core & (sm >= base + REGION_LEVEL * (peak - base)) & (d2 <= (RADIUS_RANGE[1] * WORK_D * 1.2) ** 2)
    lab, _ = ndi.label(region)
    pick = lab[int(cy), int(cx)] if lab[int(cy), int(cx)] else (np.bincount(lab[near].ravel())[1:].argmax() + 1
                                                                 if lab[near].any() else 0)
    if pick:
        region = lab == pick
        if trace is not None:
            trace["region"] = region
        cy, cx = float(yy[region].mean()), float(xx[region].mean())
        radius = float(np.clip(math.sqrt(region.sum() / math.pi), RADIUS_RANGE[0] * WORK_D, RADIUS_RANGE[1] * WORK_D))
    else:
        radius = _radius(sm, core, cy, cx)
    radius = math.exp(RADIUS_WEIGHT * math.log(radius) + (1 - RADIUS_WEIGHT) * math.log(RADIUS_PRIOR * WORK_D))
    # the centre: the circle of that radius brightest against its surround, vessels painted out (step 5)
    # (computed in a window around the first centre: the circles within a radius of it, their rings, and
    # a margin of 0.05 D for the smoothing and the painting)
    h = int(math.ceil((1 + FIT_OUTER) * radius + 0.05 * WORK_D))
    win = np.s_[max(0, int(cy) - h):int(cy) + h + 1, max(0, int(cx) - h):int(cx) + h + 1]
    fit = np.full(fill.shape, np.nan, np.float32)
    fit[win] = _circle_fit(_without_vessels(fill[win], v[win]), core[win], radius)
    near_first = core & ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & np.isfinite(fit)
    if trace is not None:
        trace["fit"] = np.where(core, fit, np.nan)
    if near_first.any():
        cy, cx = (float(c) for c in np.unravel_index(int(np.argmax(np.where(near_first, fit, -np.inf))), fit.shape))
    # then a little towards where the vessel trunk enters (the convergence peak within the disc)
    inside = core & ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)
    if inside.any() and converge[inside].max() > 0:
        ty, tx = np.unravel_index(int(np.argmax(np.where(inside, converge, -np.inf))), converge.shape)
        cy, cx = cy + TRUNK_WEIGHT * (ty - cy), cx + TRUNK_WEIGHT * (tx - cx)
    # confidence: the best score against the best one away from this disc
    away = core & ((yy - cy) ** 2 + (xx - cx) ** 2 > (2 * radius) ** 2)
    best = float(score[int(round(cy)), int(round(cx))]) if core[int(round(cy)), int(round(cx))] else float(
        score[core].max())
    other = float(score[away].max()) if away.any() else float(score[core].min())
    spread = float(score[core].std()) or 1.0
    confidence = 1.0 - math.exp(-max(0.0, best - other) / spread / CONFIDENCE_SCALE)
    return describe(cx / k, cy / k, radius / k, confidence, fov)


def _without_vessels(lum, vessels):
    """The brightness with the vessels (dilated by a pixel) painted out from their surround (cv2.inpaint,
    Telea 2004), smoothed at 0.012 D: the disc without the dark trunk crossing it."""
    import cv2
    from scipy import ndimage as ndi

    hole = ndi.binary_dilation(vessels, iterations=1).astype(np.uint8)
    return _gauss(cv2.inpaint(lum.astype(np.float32), hole, 3, cv2.INPAINT_TELEA), 0.012 * WORK_D)


def _circle_fit(lum, core, radius):
    """For every centre: the mean of ``lum`` within ``radius`` minus its mean in the ring out to
    FIT_OUTER radii, both over the FOV's ``core`` only; NaN where less than half the circle is inside."""
    import cv2

    s = int(math.ceil(FIT_OUTER * radius))
    yy, xx = np.mgrid[-s:s + 1, -s:s + 1]
    d = np.hypot(yy, xx)
    disc_k = (d <= radius).astype(np.float32)
    ring_k = ((d > radius) & (d <= FIT_OUTER * radius)).astype(np.float32)
    w = core.astype(np.float32)
    val = np.where(core, lum, 0).astype(np.float32)

    def total(a, kernel):
        return cv2.filter2D(a, -1, kernel, borderType=cv2.BORDER_CONSTANT)

    n_in, n_ring = total(w, disc_k), total(w, ring_k)
    fit = total(val, disc_k) / np.maximum(n_in, 1) - total(val, ring_k) / np.maximum(n_ring, 1)
    return np.where(n_in >= 0.5 * disc_k.sum(), fit, np.nan)


def _radius(sm, core, cy, cx, rays=72):
    """Median over rays of where the brightness falls fastest, between RADIUS_RANGE of the FOV diameter."""
    from scipy.ndimage import map_coordinates

    r = np.arange(RADIUS_RANGE[0] * WORK_D * 0.5, RADIUS_RANGE[1] * WORK_D * 1.3, 0.5)
    t = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    ys = cy + np.sin(t)[:, None] * r[None]
    xs = cx + np.cos(t)[:, None] * r[None]
    prof = map_coordinates(sm, [ys, xs], order=1, mode="nearest")
    inside = map_coordinates(core.astype(np.float32), [ys, xs], order=0, mode="constant") > 0
    drop = -np.gradient(prof, axis=1)
    ok = (r >= RADIUS_RANGE[0] * WORK_D) & (r <= RADIUS_RANGE[1] * WORK_D)
    drop[:, ~ok] = -np.inf
    drop[~inside] = -np.inf
    good = np.isfinite(drop).any(axis=1)
    if not good.any():
        return 0.07 * WORK_D
    edges = r[np.argmax(drop[good], axis=1)]
    return float(np.median(edges))


def write_disc_json(path, name, disc):
    """One image's disc as NAME_disc.json (atomically): what predict.py --disc gathers into disc.csv."""
    import json

    from imio import atomic_replace

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump({"image": name, **{k: disc.get(k) for k in COLUMNS}}, f, indent=1)

    atomic_replace(path, write, suffix=".json")


def read_disc_json(path):
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
