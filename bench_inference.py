"""Inference benchmark: image size -> median latency and peak memory, default model vs the original.

    python bench_inference.py                       # UNet.onnx and UNet.pth vs a random-weight width-64 depth-5 U-Net
    python bench_inference.py --sizes 565x584 3504x2336 --repeats 5

Each configuration runs in a fresh process (so peak RSS is its own); the image is synthetic
(a DRIVE test image resized, or a generated disc when DRIVE is absent), already in memory, and the
model already loaded: the time is the in-process segmentation time only (for an artery/vein model,
``--weights UNet_AV.onnx``: the vessel map and every vessel pixel's class, as predict.py --av).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from cli import bounded

CHILD = r"""
import json, resource, statistics, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
import allocator
allocator._MALLOC_TUNED = {untuned!r}  # True: pretend it is done already, so glibc keeps its defaults
from inference import Segmenter
from preprocess import resize
w, h, weights, repeats, image, rescale, flip = {w}, {h}, {weights!r}, {repeats}, {image!r}, {rescale!r}, {flip!r}
if weights == "original":
    import torch
    from unet import UNet
    torch.manual_seed(0)
    seg = Segmenter(UNet(1, 64, 5).eval(), {{"method": "whole", "enhance": "clahe", "fov_diameter": 540}}, 0.5)
else:
    seg = Segmenter.from_file(weights, rescale=rescale, flip=flip)
if image:
    from imio import read_image
    img = resize(read_image(image), (w, h))
else:
    yy, xx = np.mgrid[:h, :w]
    img = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.46 * min(h, w)) ** 2, 140, 3).astype(np.uint8)
run = seg.segment_av if seg.classes == "av" else seg.segment  # an artery/vein model: vessels and their classes
run(img)
times = []
for _ in range(repeats):
    t = time.perf_counter(); run(img); times.append(time.perf_counter() - t)
print(json.dumps({{"median_s": statistics.median(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch_loaded": "torch" in sys.modules}}))
"""


def measure(repo, w, h, weights, repeats, image, rescale=True, untuned=False, flip=False):
    code = CHILD.format(repo=str(repo), w=w, h=h, weights=weights, repeats=repeats, image=image, rescale=rescale,
                        untuned=untuned, flip=flip)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"error: benchmark child failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["UNet.onnx", "UNet.pth"],
                   help="models to benchmark: .onnx runs through ONNX Runtime, .pth through PyTorch (default: %(default)s)")
    p.add_argument("--sizes", nargs="+", default=["565x584", "1130x1168", "3504x2336"], help="WxH image sizes")
    p.add_argument("--repeats", type=bounded(int, 1), default=7, help="timed runs per size (default: %(default)s)")
    p.add_argument("--image", default="predict/img.png", help="image resized to each size (default: %(default)s)")
    p.add_argument("--no-original", action="store_true", help="skip the original 31 M-parameter U-Net")
    p.add_argument("--no-rescale", action="store_true",
                   help="segment at the given size (tiled) instead of rescaling by the FOV: shows memory/time vs pixels")
    p.add_argument("--untuned-malloc", action="store_true",
                   help="keep glibc's default allocator settings (shows what unet.tune_malloc saves)")
    p.add_argument("--tta", action="store_true",
                   help="also time each model with the flip (test-time augmentation, predict.py --tta)")
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parent
    for weights in args.weights:
        if not Path(weights).is_file():
            raise SystemExit(f"error: weights file {weights} not found")
    image = str(Path(args.image).resolve()) if Path(args.image).is_file() else ""
    print("| image (WxH) | model | median latency (s) | peak RSS (MB) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        flags = (" --no-rescale" if args.no_rescale else "") + (" --untuned-malloc" if args.untuned_malloc else "")
        rows = [(Path(w).name + flags + tta, w, bool(tta)) for w in args.weights for tta in ["", " --tta"][:1 + args.tta]]
        if not args.no_original:
            rows.append(("original U-Net 64/5 (random weights)", "original", False))
        for label, weights, flip in rows:
            repeats = max(1, args.repeats if weights != "original" else min(args.repeats, 3))
            r = measure(repo, w, h, weights, repeats, image, rescale=not args.no_rescale, untuned=args.untuned_malloc,
                        flip=flip)
            print(f"| {w}x{h} | {label} | {r['median_s']:.3f} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
