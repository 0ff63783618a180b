"""Measuring benchmark: mask size -> median time of morphometry.measure_mask (the whole FOV), of
measure_with_zones (plus finding the optic disc in the photograph and measuring zones B and C), and
peak memory.

    python bench_measure.py                                    # DRIVE size and 3504x2336 (8 megapixels)
    python bench_measure.py --mask result/res.png --sizes 565x584 2048x2048 --repeats 5

The mask (default: the shipped model's mask of the sample photograph, made here with UNet.onnx) is
resized to each size (nearest neighbour: the vessels scale with it, as in a photograph of higher
resolution) with a centred circular FOV. Each size runs in a fresh process, so the peak RSS is its
own; the sample photograph is resized with it for the disc. The first call (skan's Numba
compilation, 4-5 s once per process on this machine) is not timed and is
reported apart, with the RSS of the process before the mask is made.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from cli import bounded

CHILD = r"""
import json, resource, statistics, sys, time
import cv2, numpy as np
sys.path.insert(0, {repo!r})
from imio import read_image, read_mask
from morphometry import measure_mask, measure_with_zones
t = time.perf_counter(); measure_mask(np.eye(40, dtype=bool)); first = time.perf_counter() - t
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
w, h = {w}, {h}
mask = cv2.resize(read_mask({mask!r}).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
yy, xx = np.mgrid[:h, :w]
fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (0.47 * min(h, w)) ** 2
photo = cv2.resize(read_image({photo!r}), (w, h), interpolation=cv2.INTER_LINEAR)
times, zoned = [], []
for _ in range({repeats}):
    t = time.perf_counter(); row, _, _ = measure_mask(mask, fov); times.append(time.perf_counter() - t)
for _ in range({repeats}):
    t = time.perf_counter(); measure_with_zones(mask, fov, photo=photo); zoned.append(time.perf_counter() - t)
print(json.dumps({{"median_s": statistics.median(times), "zones_s": statistics.median(zoned),
                  "first_call_s": first, "base_rss_mb": base,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "mask_mb": mask.nbytes / 2 ** 20, "segments": row["n_segments"],
                  "torch_loaded": "torch" in sys.modules}}))
"""


def run(repo, mask, photo, w, h, repeats):
    r = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(repo), mask=str(mask), photo=str(photo), w=w, h=h,
                                                           repeats=repeats)],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"error: benchmark child failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mask", default=None, help="a 0/255 vessel mask (default: segment predict/img.png with UNet.onnx)")
    p.add_argument("--sizes", nargs="+", default=["565x584", "3504x2336"], help="WxH mask sizes")
    p.add_argument("--repeats", type=bounded(int, 1), default=5, help="timed runs per size (default: %(default)s)")
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parent
    mask = args.mask
    if mask is None:
        import tempfile

        from imio import read_image, write_png
        from inference import Segmenter

        mask = Path(tempfile.mkdtemp()) / "mask.png"
        write_png(mask, Segmenter.from_file(repo / "UNet.onnx").segment(read_image(repo / "predict" / "img.png"))[1])
    print("| mask (WxH) | segments | median time (s) | with the disc and zones B, C (s) | peak RSS (MB) "
          "| RSS before the mask (MB) | mask (MB, bool) |")
    print("|---|---|---|---|---|---|---|")
    first = []
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        r = run(repo, mask, repo / "predict" / "img.png", w, h, args.repeats)
        first.append(r["first_call_s"])
        print(f"| {w}x{h} | {r['segments']} | {r['median_s']:.3f} | {r['zones_s']:.3f} | {r['peak_rss_mb']:.0f} "
              f"| {r['base_rss_mb']:.0f} "
              f"| {r['mask_mb']:.1f} |", flush=True)
    print(f"\nfirst call in a process (skan's Numba compilation, not timed above): {min(first):.1f}-{max(first):.1f} s")


if __name__ == "__main__":
    main()
