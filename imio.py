"""Image and file I/O: robust reading of what cameras and archives produce, atomic writing."""
import csv
import gzip
import io
import os
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cli import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".bmp"}


def is_image_file(path):
    """True for a file whose name looks like a supported image (``.gz`` allowed)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in IMAGE_SUFFIXES and not p.name.startswith(".")


def stem(path):
    """File name without image and ``.gz`` suffixes: ``im0001.ah.ppm.gz`` -> ``im0001.ah``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return Path(name).stem


def _to_uint8(im):
    """Convert any PIL image to a uint8 array, HxW (gray) or HxWx3 (RGB)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
    if mode == "1":
        return (np.asarray(im, dtype=np.uint8) * 255).astype(np.uint8)
    if mode in ("L", "LA"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if im.mode != "RGB":  # palette, RGBA, CMYK, YCbCr, ...
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 3 and (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
        return np.ascontiguousarray(arr[..., 0])
    return arr


def _read(path, convert, max_pixels=None):
    """Open an image file (also gzip-compressed), load it and return ``convert(PIL image)``.

    Raises UserError with the file name for a missing, unreadable, truncated or oversized file;
    with ``max_pixels``, for an image of more pixels (checked from its header, before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
        with warnings.catch_warnings():
            if max_pixels is not None:  # the size is checked here, in words: no bomb warning in the log
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise UserError(f"{path.name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, more than the "
                                f"{max_pixels / 1e6:.0f} accepted here; downscale it (or use predict.py)")
            im.load()
            return convert(im)
    except Image.DecompressionBombError:
        raise UserError(f"{path}: larger than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; "
                        "downscale it before segmenting") from None
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError, zlib.error) as exc:
        raise UserError(f"{path}: not a readable image ({_why(exc)}); replace or remove the file") from None


def _why(exc):
    """What is wrong with an unreadable image file, in words (not Python's internals)."""
    text = str(exc).lower()
    if isinstance(exc, UnidentifiedImageError) or "cannot identify" in text:
        return "not an image file, or a format that cannot be read"
    if isinstance(exc, (EOFError, zlib.error)) or "truncated" in text or "broken" in text or "not enough" in text:
        return "the file is cut short or damaged"
    return "the file is damaged"


def read_image(path, max_pixels=None):
    """Read an image as uint8: HxW for gray content, HxWx3 RGB otherwise.

    Handles PNG/JPEG/TIFF/GIF/PPM (also gzip-compressed), RGBA, palette and 16-bit images.
    Raises UserError with the file name for a missing, unreadable or truncated file, or one of more
    than ``max_pixels`` pixels (found from its header: nothing large is decoded).
    """
    return _read(path, _to_uint8, max_pixels)


def read_mask(path):
    """Read a binary mask/label image: bool HxW (any non-zero pixel is foreground)."""
    arr = read_image(path)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    return arr > 127 if arr.max() > 1 else arr > 0


def atomic_replace(path, write_fn, suffix=None):
    """Call ``write_fn(tmp_path)`` then atomically move the temporary file onto ``path``.

    A crash at any point leaves ``path`` either untouched or completely written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_csv(path, rows, fieldnames):
    """Write dicts as a CSV table with a header line, atomically (a reader never sees half a table)."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fieldnames)
            w.writeheader()
            w.writerows(rows)

    atomic_replace(path, write, suffix=".csv")


def write_png(path, arr, text=None):
    """Write a uint8 array as PNG atomically, with optional ``text`` metadata (tEXt chunks)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, str(v))
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    atomic_replace(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG", pnginfo=info), suffix=".png")


PROB_SCALE = 65535


def write_probability(path, prob):
    """Write a probability map in [0, 1] as a 16-bit gray PNG (0-65535), atomically.

    16 bits keep the ranking of the scores: AUCs computed from the file equal those computed in
    memory (8 bits tie the many near-0 and near-1 values a CE + Dice model produces).
    """
    write_png(path, np.round(np.clip(prob, 0, 1) * PROB_SCALE).astype(np.uint16))


def _probability(im):
    if im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32) / np.float32(PROB_SCALE)
    if im.mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0, 1)
    arr = _to_uint8(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.float32) / np.float32(255.0)


def read_probability(path):
    """A probability map as float32 in [0, 1] from an 8-bit (0-255) or 16-bit (0-65535) image.

    A colour image is read from its first channel. Raises UserError like ``read_image``.
    """
    return _read(path, _probability)


def png_text(path):
    """The tEXt metadata of a PNG file (empty dict when it has none or cannot be read)."""
    try:
        with Image.open(path) as im:
            return dict(getattr(im, "text", {}) or {})
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return {}


def replace_dir(new_dir, final_dir):
    """Move a completely written folder onto ``final_dir``, replacing what was there.

    The old folder is renamed aside first and removed only after the new one is in place, so an
    interruption never leaves a mix of old and new files inside ``final_dir``.
    """
    import shutil

    new_dir, final_dir = Path(new_dir), Path(final_dir)
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(new_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def list_images(folder, what="images"):
    """Sorted image files of a folder; other files are skipped with a warning."""
    from cli import warn

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"folder {folder} not found ({what} expected there)")
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and is_image_file(p):
            files.append(p)
        else:
            warn(f"skipping {p}: not an image file")
    return files
