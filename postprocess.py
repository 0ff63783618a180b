"""From a vessel probability map to the vessel mask. No PyTorch: it runs in the light install.

1. **Threshold**: a pixel is vessel where its probability is at least the weights' threshold
   (chosen on validation images when the model was trained, never on test images).
2. **Gaps bridged where the map supports it**: the centreline (scikit-image ``skeletonize``) of
   the region where the probability is at least ``BRIDGE_LOW`` is cut into the pieces that lie
   outside the thresholded mask; a piece that touches two or more separate parts of the mask
   (8-connected) joins them through pixels the network still finds vessel-like, and is added as a
   1 px line. Pieces that touch one part or none are not added (they would lengthen or invent
   vessels rather than reconnect them).
2b. **Thin vessels kept as centrelines**: the same centreline pieces of ``prob >= LOW`` outside the
   mask, where they continue it: the bridges, and pieces that touch one part of the mask and are at
   least ``THIN_MIN_LENGTH`` px long (at DRIVE's scale; shorter ones are mostly spurs of the
   thinning along a vessel's faint edge). They are added as 1 px lines, so the tree gains the faint
   thin vessels the map holds below the threshold without widening the vessels it already has: the
   vessel area stays about the threshold's, and the mean calibre (area / length) falls as the length
   grows (docs/experiments.md, Session 18).
3. **Specks removed**: the mask's 8-connected pieces of at most ``MIN_FRAGMENT`` pixels (at
   DRIVE's scale: a FOV ``REFERENCE_FOV`` px across; the area grows with the square of a larger
   FOV's diameter) are removed (scikit-image ``remove_small_objects``). A vessel is a connected
   tree; an isolated speck of 20 px (a 2 px wide piece 10 px long) is noise or a piece of vessel
   too short to measure, and every speck adds a component and end points to the tree.

Steps 2, 2b and 3 are options, off by default (``predict.py --bridge``, ``--thin-vessels LOW``,
``--min-fragment 20``); the weights' measuring setting (``--tree``, tree_threshold.py) may use them:
measured on validation images (docs/experiments.md, Session 12) they move the tree's counts
towards the annotation's on some cameras and past it on others, and cost time on large
photographs (about 0.03 s per DRIVE image, 1 s at 8 megapixels).
"""
import numpy as np

MIN_FRAGMENT = 20
BRIDGE_LOW = 0.1
THIN_MIN_LENGTH = 12  # px of centreline at DRIVE's scale: a piece that continues the mask from one side
REFERENCE_FOV = 540.0  # px: DRIVE's FOV diameter, the scale MIN_FRAGMENT is given at


def fragment_size(fov_diameter_px, min_fragment=MIN_FRAGMENT):
    """The largest piece removed in a photograph whose FOV is ``fov_diameter_px`` across."""
    if not min_fragment:
        return 0
    return max(1, int(round(min_fragment * (float(fov_diameter_px) / REFERENCE_FOV) ** 2)))


def _pieces(prob, mask, low):
    """The centreline (``skeletonize``) pieces of ``prob >= low`` outside ``mask``, labelled, and for
    each piece whether it touches the mask, and whether it touches two or more separate parts of it
    (8-connected)."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    eight = np.ones((3, 3), bool)
    pieces = skeletonize(np.asarray(prob) >= low) & ~mask
    labels, n = ndi.label(pieces, eight)
    parts, count = ndi.label(mask, eight)
    # the largest and smallest label of a mask part next to each pixel (0 / count + 1: none)
    above = ndi.grey_dilation(parts, footprint=eight)
    below = ndi.grey_erosion(np.where(parts > 0, parts, count + 1), footprint=eight)
    at = labels > 0
    top = np.zeros(n + 1, parts.dtype)
    bottom = np.full(n + 1, count + 1, parts.dtype)
    np.maximum.at(top, labels[at], above[at])  # per piece, over its pixels
    np.minimum.at(bottom, labels[at], below[at])
    touches = top > 0
    touches[0] = False
    return labels, touches, touches & (bottom <= count) & (top > bottom)


def bridges(prob, mask, low=BRIDGE_LOW):
    """The 1 px centreline pieces of ``prob >= low`` outside ``mask`` that touch two or more of the
    mask's separate (8-connected) parts."""
    labels, _, joins = _pieces(prob, mask, low)
    return joins[labels]


def thin_vessels(prob, mask, low, min_length=THIN_MIN_LENGTH):
    """The 1 px centreline pieces of ``prob >= low`` outside ``mask`` that continue it: the bridges,
    and pieces touching the mask that have at least ``min_length`` pixels."""
    labels, touches, joins = _pieces(prob, mask, low)
    sizes = np.bincount(labels.ravel(), minlength=len(touches))
    return (joins | (touches & (sizes >= min_length)))[labels]


def vessel_mask(prob, threshold, fov_diameter_px=REFERENCE_FOV, bridge=False, min_fragment=0, low=BRIDGE_LOW,
                thin=0.0):
    """The boolean vessel mask of a probability map: ``prob >= threshold``; with ``bridge``, gaps
    bridged along ``prob >= low``; with ``thin`` > 0, the thin vessels of ``prob >= thin`` that
    continue the mask added as centrelines; with ``min_fragment`` > 0, specks of up to that many px
    (at DRIVE's scale) removed."""
    mask = np.asarray(prob) >= threshold
    if not mask.any():
        return mask
    if bridge:
        mask = mask | bridges(prob, mask, low)
    if thin:
        mask = mask | thin_vessels(prob, mask, thin, THIN_MIN_LENGTH * float(fov_diameter_px) / REFERENCE_FOV)
    size = fragment_size(fov_diameter_px, min_fragment)
    if size:
        from skimage.morphology import remove_small_objects

        mask = remove_small_objects(mask, max_size=size, connectivity=2)
    return mask


def add_postprocess_args(parser, tree=True, thin=True):
    """``--bridge``, ``--thin-vessels`` (with ``thin``) and ``--min-fragment``, the same in every script
    that makes masks; with ``tree`` also ``--tree`` (the setting stored in the weights)."""
    from cli import bounded

    parser.add_argument("--bridge", action="store_true",
                        help=f"bridge gaps in the mask along the centreline of the map's probability >= {BRIDGE_LOW}, "
                             "where it joins two separate pieces (postprocess.py; more connected trees for measuring)")
    if thin:
        parser.add_argument("--thin-vessels", type=bounded(float, 0, 1, hi_open=True), default=0.0, metavar="LOW",
                            help="keep the thin vessels the map holds below the threshold: add the centreline of its "
                                 "probability >= LOW where it continues the mask, as 1 px lines (postprocess.py; a longer, "
                                 "more branched tree at the threshold's pixel accuracy, area and calibre; default: 0, off)")
    parser.add_argument("--min-fragment", type=bounded(int, 0), default=0, metavar="N",
                        help=f"remove pieces of the mask of at most N px at DRIVE's scale, scaled with the FOV's area "
                             f"(e.g. {MIN_FRAGMENT}; default: 0, none)")
    if tree:
        parser.add_argument("--tree", action="store_true",
                            help="use the weights' tree setting, for measuring the vessel tree: the threshold, or the level "
                                 "down to which thin vessels are kept as centrelines, at which the masks' centreline "
                                 "length matched the annotations' on choosing photographs (tree_threshold.py), with the "
                                 "bridging and speck removal chosen with it. --threshold, --bridge, --thin-vessels and "
                                 "--min-fragment given as well still apply")

