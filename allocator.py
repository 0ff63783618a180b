"""Process-level memory allocator settings for fast CPU inference and training (no torch needed)."""
import ctypes

_MALLOC_TUNED = False


def tune_malloc():
    """Keep freed activation buffers (up to 32 MB each) in the process heap instead of returning them to the OS.

    With glibc's defaults, every layer's output of a full-size image is a fresh ``mmap``: the
    kernel zeroes and page-faults it in, and ``free`` hands it back, image after image. That was
    ~30 % of CPU inference time and a third of a training step here (bench_inference.py
    --untuned-malloc; see the README). The process keeps its peak memory instead of shrinking
    between images; the peak grew by at most 50 MB in our measurements. A no-op where the C
    library is not glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS, Windows): nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's largest allowed value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 2**30)
