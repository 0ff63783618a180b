"""Image preprocessing shared by data preparation, training and inference.

Everything a model needs to see its inputs the way it saw them in training is described by a
small ``preprocess`` dict stored in the checkpoint:

``{"method": "whole", "enhance": "clahe", "fov_diameter": 540}``
    whole image at its native scale (rescaled by its field of view to ``fov_diameter``),
    grayscale, CLAHE over the whole image; ``"channel": "green"`` (absent: gray) takes the green
    channel of a colour photograph instead of its gray level, ``"rgb"`` all three colour channels
    (CLAHE on each; the artery/vein model, for which colour tells the kinds apart); a list, e.g.
    ``["gray", "green"]``, gives the network one input channel per entry (an ensemble of members
    that see one each). ``"classes": "av"``: the network's two outputs are the vessel probability
    and the probability that a vessel pixel is an artery (av.py); absent: one output, vessels.
``{"method": "patch", "size": 512, "patch": 256, "enhance": "equalize"}``
    the original "local enhancement" method: resize to ``size`` x ``size``, cut ``patch`` x
    ``patch`` windows, equalize the histogram of each window, segment it.
"""
import cv2
import numpy as np

from cli import UserError

ENHANCERS = ("none", "equalize", "clahe")
MIN_SIDE = 8


def as_image(arr):
    """Any image array a caller may hand over, as uint8 HxW (gray) or HxWx3 (RGB); else UserError.

    Accepts bool, integer (uint8, uint16, ...) and float (0-1, or 0-255 when larger) arrays with
    1 (also HxWx1), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels; refuses empty, NaN-filled and
    smaller than MIN_SIDE x MIN_SIDE images with a message that says why.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise UserError(f"not an image: array of shape {arr.shape} (expected HxW gray or HxWx3 colour)")
    h, w = arr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(f"image is {w}x{h} pixels: too small to segment (at least {MIN_SIDE}x{MIN_SIDE})")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = 255 if arr.max() <= 255 else 65535 if arr.max() <= 65535 else float(arr.max())
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise UserError("image contains NaN or infinite values")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return np.clip(np.round(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    raise UserError(f"not an image: array of type {arr.dtype}")


CHANNELS = ("gray", "green")  # one input channel each
COLOUR = "rgb"  # the three colour channels as three inputs


def input_channels(channel):
    """How many input channels a model's ``channel`` (a name, ``rgb`` or a list) gives the network."""
    return 3 if channel == COLOUR else 1 if isinstance(channel, str) else len(channel)


def to_gray(img, channel="gray"):
    """uint8 HxW from an RGB (HxWx3) or gray image: the gray level (ITU-R 601, the same formula
    everywhere) or, with ``channel="green"``, the green channel, where vessels contrast most.
    A gray image is returned as it is."""
    if img.ndim == 2:
        return img
    if channel == "green":
        return np.ascontiguousarray(img[..., 1])
    if channel != "gray":
        raise ValueError(f"unknown channel {channel!r}; choose from {CHANNELS}")
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)


def to_channels(img, channel="gray"):
    """The network's input image: HxW for one channel name (``to_gray``), HxWx3 for ``rgb`` (a gray
    image repeated three times), HxWxC for a list of names (an ensemble whose members see different
    channels, one each)."""
    if channel == COLOUR:
        return np.ascontiguousarray(img[..., :3]) if img.ndim == 3 else np.dstack([img] * 3)
    if isinstance(channel, str):
        return to_gray(img, channel)
    return np.dstack([to_gray(img, c) for c in channel])


def reads_colour(channel):
    """Whether a model's ``channel`` (a name or a list of names) uses more than the gray level."""
    return any(c != "gray" for c in ([channel] if isinstance(channel, str) else channel))


def equalize(gray):
    """Global histogram equalization of a uint8 gray image (the original method)."""
    return cv2.equalizeHist(np.ascontiguousarray(gray))


def clahe(gray, clip=2.0, tile=8):
    """Contrast-limited adaptive histogram equalization."""
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tile, tile)).apply(np.ascontiguousarray(gray))


def enhance(gray, how):
    """``how`` applied to a HxW image, or to each channel of a HxWxC one."""
    if gray.ndim == 3:
        return np.dstack([enhance(gray[..., i], how) for i in range(gray.shape[2])])
    if how == "none":
        return gray
    if how == "equalize":
        return equalize(gray)
    if how == "clahe":
        return clahe(gray)
    raise ValueError(f"unknown enhancement {how!r}; choose from {ENHANCERS}")


def resize(img, size, label=False):
    """Resize to (width, height); labels/masks stay binary (nearest neighbour)."""
    w, h = size
    if img.dtype == bool:
        return cv2.resize(img.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    interp = cv2.INTER_NEAREST if label else cv2.INTER_AREA if w * h < img.shape[0] * img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def rescale(img, scale, label=False):
    """``img`` resized by ``scale`` (at least 1 px a side); the same array when ``scale`` is 1."""
    if scale == 1.0:
        return img
    h, w = img.shape[:2]
    return resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), label=label)


def estimate_fov(img):
    """Field-of-view mask (bool HxW) of a fundus photograph, from the image itself.

    The FOV is the bright disc on a dark background. On a smoothed brightness map (the red channel
    of a colour image, where the fundus is brightest and the background darkest; the gray level of
    a gray one) pixels above half the Otsu threshold are kept, then the largest connected region
    with its holes filled. Works for any size and circle radius; vectorised, no per-pixel loop.
    (Measured: IoU 0.985-1.0 with the 40 official DRIVE masks, colour or gray input.)
    """
    img = as_image(img)
    bright = img[..., 0] if img.ndim == 3 else img
    bright = cv2.GaussianBlur(np.ascontiguousarray(bright), (0, 0), max(1.0, min(bright.shape) / 300))
    if int(bright.max()) - int(bright.min()) < 10:  # flat image: no recognisable FOV, keep everything
        return np.ones(bright.shape, bool)
    otsu, _ = cv2.threshold(bright, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = (bright > max(8.0, 0.5 * otsu)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.ones(bright.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    fg = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(fg)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def fov_depth(fov):
    """Each pixel's distance from the outside of the FOV mask, the image's border counting as outside (OpenCV's 3x3
    approximation of the Euclidean distance, 0.955 per step: 0.955 on the mask's outermost pixels), 0 outside it."""
    return cv2.distanceTransform(np.pad(np.asarray(fov, bool), 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]


def fov_diameter(fov):
    """Diameter in pixels of the FOV disc (from its width; robust to cropped top/bottom)."""
    cols = np.flatnonzero(fov.any(axis=0))
    return float(cols[-1] - cols[0] + 1) if cols.size else float(fov.shape[1])
