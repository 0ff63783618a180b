"""From a vessel probability map to the vessel mask. No PyTorch: it runs in the light install.

1. **Threshold**: a pixel is vessel where its probability is at least the weights' threshold
   (chosen on validation images when the model was trained, never on test images).
2. **Gaps bridged where the map supports it**: the centreline (scikit-image ``skeletonize``) of
   the region where the probability is at least ``BRIDGE_LOW`` is cut into the pieces that lie
   outside the thresholded mask; a piece that touches two or more separate parts of the mask
   (8-connected) joins them through pixels the network still finds vessel-like, and is added as a
   1 px line. Pieces that touch one part or none are not added (they would lengthen or invent
   vessels rather than reconnect them).
3. **Specks removed**: the mask's 8-connected pieces of at most ``MIN_FRAGMENT`` pixels (at
   DRIVE's scale: a FOV ``REFERENCE_FOV`` px across; the area grows with the square of a larger
   FOV's diameter) are removed (scikit-image ``remove_small_objects``). A vessel is a connected
   tree; an isolated speck of 20 px (a 2 px wide piece 10 px long) is noise or a piece of vessel
   too short to measure, and every speck adds a component and end points to the tree.

Steps 2 and 3 are options, off by default (``predict.py --bridge``, ``--min-fragment 20``):
measured on validation images (docs/experiments.md, Session 12) they move the tree's counts
towards the annotation's on some cameras and past it on others, and cost time on large
photographs (about 0.03 s per DRIVE image, 1 s at 8 megapixels).
"""
import numpy as np

MIN_FRAGMENT = 20
BRIDGE_LOW = 0.1
REFERENCE_FOV = 540.0  # px: DRIVE's FOV diameter, the scale MIN_FRAGMENT is given at


def fragment_size(fov_diameter_px, min_fragment=MIN_FRAGMENT):
    """The largest piece removed in a photograph whose FOV is ``fov_diameter_px`` across."""
    if not min_fragment:
        return 0
    return max(1, int(round(min_fragment * (float(fov_diameter_px) / REFERENCE_FOV) ** 2)))


def bridges(prob, mask, low=BRIDGE_LOW):
    """The 1 px centreline pieces of ``prob >= low`` outside ``mask`` that touch two or more of the
    mask's separate (8-connected) parts."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    eight = np.ones((3, 3), bool)
    pieces = skeletonize(np.asarray(prob) >= low) & ~mask
    labels, n = ndi.label(pieces, eight)
    if n == 0:
        return pieces
    parts, count = ndi.label(mask, eight)
    # the largest and smallest label of a mask part next to each pixel (0 / count + 1: none)
    above = ndi.grey_dilation(parts, footprint=eight)
    below = ndi.grey_erosion(np.where(parts > 0, parts, count + 1), footprint=eight)
    at = labels > 0
    top = np.zeros(n + 1, parts.dtype)
    bottom = np.full(n + 1, count + 1, parts.dtype)
    np.maximum.at(top, labels[at], above[at])  # per piece, over its pixels
    np.minimum.at(bottom, labels[at], below[at])
    joins = (top > 0) & (bottom <= count) & (top > bottom)  # two different parts touched
    joins[0] = False
    return joins[labels]


def vessel_mask(prob, threshold, fov_diameter_px=REFERENCE_FOV, bridge=False, min_fragment=0, low=BRIDGE_LOW):
    """The boolean vessel mask of a probability map: ``prob >= threshold``; with ``bridge``, gaps
    bridged along ``prob >= low``; with ``min_fragment`` > 0, specks of up to that many px (at
    DRIVE's scale) removed."""
    mask = np.asarray(prob) >= threshold
    if not mask.any():
        return mask
    if bridge:
        mask = mask | bridges(prob, mask, low)
    size = fragment_size(fov_diameter_px, min_fragment)
    if size:
        from skimage.morphology import remove_small_objects

        mask = remove_small_objects(mask, max_size=size, connectivity=2)
    return mask


def add_postprocess_args(parser, tree=True):
    """``--bridge`` and ``--min-fragment``, the same in every script that makes masks; with ``tree``
    also ``--tree`` (the setting stored in the weights)."""
    from cli import bounded

    parser.add_argument("--bridge", action="store_true",
                        help=f"bridge gaps in the mask along the centreline of the map's probability >= {BRIDGE_LOW}, "
                             "where it joins two separate pieces (postprocess.py; more connected trees for measuring)")
    parser.add_argument("--min-fragment", type=bounded(int, 0), default=0, metavar="N",
                        help=f"remove pieces of the mask of at most N px at DRIVE's scale, scaled with the FOV's area "
                             f"(e.g. {MIN_FRAGMENT}; default: 0, none)")
    if tree:
        parser.add_argument("--tree", action="store_true",
                            help="use the weights' tree setting, for measuring the vessel tree: the threshold at which the "
                                 "masks' centreline length matched the annotations' on choosing photographs "
                                 "(tree_threshold.py), with the bridging chosen with it; more thin vessels, less pixel "
                                 "accuracy. --threshold, --bridge and --min-fragment given as well still apply")

