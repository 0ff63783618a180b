"""Inference shared by predict.py, predict_through_patch.py, evaluate.py and training validation.

``Segmenter`` turns any fundus photograph (RGB or gray, any size) into a vessel probability map of
the same size, following the preprocessing recorded in the checkpoint:

* ``method: whole``  -- gray, rescale so the FOV diameter matches the training scale (a larger
  photograph: up to ``detail`` times it, when the model was trained for that), CLAHE,
  tiled sliding-window inference (tiles overlap by a margin wider than the network's receptive
  field and only each tile's centre is kept: identical to untiled inference, bounded memory),
  the map brought back to the photograph's size by ``upsample_map`` (bicubic, on the logit).
* ``method: patch``  -- the original local-enhancement method: gray, resize to ``size`` x ``size``,
  overlapping ``patch`` windows each histogram-equalized and segmented, blended with smooth
  weights (no seams), resized back.

Pixels outside the field of view (estimated from the image unless given) are set to 0.

The network call is the only backend-specific part: ``unet.TorchNet`` (a ``.pth`` checkpoint,
PyTorch) or ``onnx_model.OnnxNet`` (an exported ``.onnx``, ONNX Runtime). This module does not
import torch, so segmenting with an ONNX model never loads it.
"""
import math
from pathlib import Path

import cv2
import numpy as np

from allocator import tune_malloc
from cli import UserError
from postprocess import vessel_mask
from preprocess import (as_image, enhance, equalize, estimate_fov, fov_depth, fov_diameter, reads_colour, rescale,
                        resize, to_channels)

MAX_UPSCALE = 4.0  # largest rescaling factor of the whole-image method
MAX_WORK_SIDE = 4096  # ... and largest side of the rescaled image
AV_WEIGHTS = "UNet_AV.onnx"  # the artery/vein model predict.py --av uses unless --weights says otherwise


def work_scale(fov, shape, target, detail=1.0):
    """The factor by which the whole-image method rescales a photograph of ``shape`` (h, w): its
    FOV to the training diameter ``target`` -- a larger one only down to ``detail`` times it --
    capped so that a tiny or mis-detected FOV cannot blow the image up (at most 4x, 4096 px a side);
    within 15 % of 1 it is 1 (no resampling). Training on another dataset (train.py --also) uses it
    too, so a photograph is trained on at the scale it is segmented at."""
    ratio = fov_diameter(fov) / float(target)
    scale = min(max(ratio, 1.0), detail) / ratio
    scale = min(scale, MAX_UPSCALE, MAX_WORK_SIDE / max(shape))
    return 1.0 if abs(math.log(scale)) < math.log(1.15) else scale


def upsample_map(prob, size, eps=1e-6):
    """A probability map of the working scale brought to ``size`` (width, height) of the photograph:
    bicubic interpolation of the logit, then the sigmoid. Interpolating the probability itself
    (bilinear, before Session 9) blurs each vessel's edge over the scale factor, so vessels came out
    wider than drawn; on the images set aside for choosing (FIVES six, STARE training images) this
    raised F1 and AUC on both (docs/experiments.md, Session 9). The same map when no resizing is needed."""
    h, w = prob.shape
    if (w, h) == tuple(size):
        return prob
    p = np.clip(prob.astype(np.float32), eps, 1 - eps)
    z = cv2.resize(np.log(p / (1 - p)), tuple(size), interpolation=cv2.INTER_CUBIC)
    np.negative(z, out=z)  # sigmoid in place: the full-size map is the one large array here
    cv2.exp(z, z)
    z += 1.0
    return np.reciprocal(z, out=z)


def window_weight(size, margin, soft, first=False, last=False):
    """1-D blending weight of a window: a smooth ramp (soft) or its centre only (hard).

    A hard window keeps its margin on a side where it touches the image border (``first`` /
    ``last``): there the margin has the same context as untiled inference.
    """
    t = np.arange(size, dtype=np.float64)
    if soft:
        return np.clip(np.minimum(t + 1, size - t) / (size / 2), 1e-3, 1.0)
    lo = 0 if first else margin
    hi = size if last else size - margin
    return np.where((t >= lo) & (t < hi), 1.0, 1e-6)


def _starts(length, window, stride):
    starts = list(range(0, max(length - window, 0) + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def tiled_predict(net, image, window, margin=None, stride=None, window_fn=None, soft=False, batch=1, flip=False,
                  fixed_window=False, trace=None):
    """Probability map (float32 HxW; K x H x W for a network of K > 1 outputs) of a uint8 gray image
    (HxW, or HxWxC: C input channels) by sliding-window inference.

    net: the network call (``unet.TorchNet``/``onnx_model.OnnxNet``: float32 NxCxHxW -> NxKxHxW
    probabilities).

    window: tile side; margin: context discarded at each tile side (hard blending);
    stride: step between tiles (default ``window - 2*margin``); window_fn: applied to each uint8
    tile before the network (e.g. histogram equalization); soft: blend with smooth weights;
    fixed_window: always use ``window`` x ``window`` tiles (the patch size the model was trained
    on), padding small images, instead of shrinking the tile to the image.
    flip: average with the horizontally flipped prediction (test-time augmentation).
    trace: a list to which each window's (y, x, network input uint8, probability) is appended
    (the app's step-by-step view; no effect on the result).
    """
    align = net.align
    h, w = image.shape[:2]
    ph, pw = math.ceil(h / align) * align, math.ceil(w / align) * align
    window = max(align, window // align * align)
    th, tw = min(window, ph), min(window, pw)
    if fixed_window:
        th, tw = window, window
        ph, pw = max(ph, th), max(pw, tw)
    padded = np.zeros((ph, pw) + image.shape[2:], np.uint8)
    padded[:h, :w] = image
    if margin is None:
        margin = window // 4
    margin = min(margin, (min(th, tw) - align) // 2)
    if stride is None:
        stride = max(align, (min(th, tw) - 2 * margin) // align * align)
    ys, xs = _starts(ph, th, stride), _starts(pw, tw, stride)
    wy = {y: window_weight(th, margin, soft, y == 0, y + th >= ph) for y in ys}
    wx = {x: window_weight(tw, margin, soft, x == 0, x + tw >= pw) for x in xs}
    acc = None  # K x H x W, once the network's number of outputs K is known
    norm = np.zeros((ph, pw), np.float32)
    coords = [(y, x) for y in ys for x in xs]
    for i in range(0, len(coords), batch):
        chunk = coords[i:i + batch]
        tiles = []
        for y, x in chunk:
            tile = padded[y:y + th, x:x + tw]
            tiles.append(window_fn(tile) if window_fn is not None else tile)
        xb = np.stack(tiles).astype(np.float32) / np.float32(255.0)
        xb = xb[:, None] if xb.ndim == 3 else np.ascontiguousarray(xb.transpose(0, 3, 1, 2))  # N x C x H x W
        prob = net(xb)
        if flip:
            prob = 0.5 * (prob + net(np.ascontiguousarray(xb[..., ::-1]))[..., ::-1])
        if trace is not None:  # the first output (vessels) of each window
            trace.extend((y, x, t, p[0]) for (y, x), t, p in zip(chunk, tiles, prob))
        if len(coords) == 1:  # one window: nothing to blend
            return _outputs(np.ascontiguousarray(prob[0, :, :h, :w]))
        if acc is None:
            acc = np.zeros((prob.shape[1], ph, pw), np.float32)
        for (y, x), p in zip(chunk, prob):
            weight = np.outer(wy[y], wx[x]).astype(np.float32)
            acc[:, y:y + th, x:x + tw] += p * weight
            norm[y:y + th, x:x + tw] += weight
    return _outputs((acc / norm)[:, :h, :w])


def _outputs(maps):
    """K x H x W maps as tiled_predict returns them: H x W for a one-output (vessel) network."""
    return maps[0] if maps.shape[0] == 1 else maps


def load_net(path, hint="", device="cpu"):
    """(network call, metadata with preprocess, threshold, info) from a ``.onnx`` or ``.pth`` file.

    ``device``: auto, cpu, cuda, cuda:N or mps (``distributed.resolve_device``); an ONNX model runs
    on ONNX Runtime's CPU or CUDA provider.
    """
    if Path(path).suffix.lower() == ".onnx":
        from onnx_model import load_onnx

        return load_onnx(path, hint, device)
    from distributed import resolve_device
    from unet import TorchNet, load_model

    model, ckpt = load_model(path, hint)
    return TorchNet(model, resolve_device(device)), ckpt


class Segmenter:
    """A loaded model with its preprocessing and threshold; load once, segment many images.

    ``net`` is a network call (``unet.TorchNet``, ``onnx_model.OnnxNet``) or a torch U-Net, which
    is wrapped (training validates through here with the model being trained).
    """

    def __init__(self, net, preprocess, threshold=0.5, tile=1024, rescale=True, flip=False, detail=None,
                 bridge=False, min_fragment=0, thin=0.0, tree=None):
        tune_malloc()
        if not hasattr(net, "backend"):
            from unet import TorchNet

            net = TorchNet(net)
        self.net = net
        self.pre = dict(preprocess)
        self.threshold = float(threshold)
        self.tile, self.rescale, self.flip = tile, rescale, flip
        # a photograph whose FOV is larger than the training scale is segmented at up to `detail`
        # times that scale (more of its thin vessels kept); 1: always at the training scale
        self.detail = float(self.pre.get("detail", 1.0) if detail is None else detail)
        # the mask's gaps bridged along the map, its thin vessels down to probability `thin` kept as
        # centrelines, and its specks of up to min_fragment px (at DRIVE's scale) removed
        # (postprocess.py; all off by default)
        self.bridge, self.min_fragment, self.thin = bool(bridge), int(min_fragment), float(thin)
        # the measuring setting stored with the weights (tree_threshold.py), used on request (use_tree)
        self.tree = dict(tree) if tree else None
        # the weights' preprocess "edge_line" {"depth": f, "length": f} (fractions of the FOV diameter): pieces of
        # the mask that run along the FOV's edge cleared (clear_edge_lines); the A/V model's, Session 28
        self.edge_line = dict(self.pre.get("edge_line") or {})

    @property
    def needs_colour(self):
        """Whether the network looks at a colour channel (green), not only the gray level."""
        return reads_colour(self.pre.get("channel", "gray"))

    @classmethod
    def from_file(cls, path, hint="", device="cpu", **kw):
        net, meta = load_net(path, hint, device)
        return cls(net, meta["preprocess"], meta["threshold"], tree=meta.get("tree"), **kw)

    def use_tree(self, name="the model"):
        """Switch to the weights' *tree* setting (tree_threshold.py): the threshold, or the level down
        to which thin vessels are kept as centrelines, at which the centreline length of the masks
        matched the annotations' on choosing photographs, with the bridging and speck removal chosen
        with it. For measuring the vessel tree (README, "A setting for measuring the tree"). Bridging,
        thin vessels and speck removal this Segmenter was asked for besides are kept."""
        if not self.tree:
            raise UserError(f"{name} has no tree setting; choose one with: python tree_threshold.py --weights "
                            f"{Path(str(name)).with_suffix('.pth').name} --images FOLDER ...")
        self.threshold = float(self.tree["threshold"])
        self.bridge = self.bridge or bool(self.tree.get("bridge", False))
        self.min_fragment = self.min_fragment or int(self.tree.get("min_fragment", 0))
        self.thin = self.thin or float(self.tree.get("thin", 0.0))

    @property
    def classes(self):
        """What the network's outputs are: "vessel" (one map), or "av" (vessel, and artery given
        vessel: an artery/vein model, av.py)."""
        return self.pre.get("classes", "vessel")

    def scale(self, fov):
        """The factor by which the whole-image method rescales a photograph with this FOV mask before
        the network sees it (``work_scale``; 1 for the patch method, which resizes to its own size)."""
        target = self.pre.get("fov_diameter")
        if self.pre["method"] != "whole" or not (self.rescale and target):
            return 1.0
        return work_scale(fov, np.shape(fov), target, self.detail)

    def probability(self, image, fov=None, trace=None, threshold=None):
        """Vessel probability in [0, 1], float32, same height/width as ``image``; 0 outside the FOV.

        ``image``: any array ``preprocess.as_image`` accepts; ``fov``: bool HxW, else estimated.
        ``trace``: a dict that receives every intermediate stage (gray, work image, network input,
        windows, blended map, the map at the photograph's size, FOV) for the step-by-step view; the
        result does not change. ``threshold``: the one the caller will cut the map at (default: the model's),
        at which the weights' ``edge_line`` finds the pieces it clears.
        """
        return self.maps(image, fov, trace, threshold)[0]

    def maps(self, image, fov=None, trace=None, threshold=None):
        """Every output of the network, as ``probability`` makes the first: float32 K x H x W in [0, 1],
        0 outside the FOV (K = 1 for a vessel model; the artery/vein model's second map is the
        probability that a vessel pixel is an artery)."""
        image = as_image(image)
        if fov is None:
            fov = estimate_fov(image)
        fov = np.asarray(fov).astype(bool)
        if fov.shape != image.shape[:2]:
            raise UserError(f"the FOV mask is {fov.shape[1]}x{fov.shape[0]} but the image is "
                            f"{image.shape[1]}x{image.shape[0]}: they must have the same size")
        gray = to_channels(image, self.pre.get("channel", "gray"))  # HxW, or HxWxC for a list of channels
        h, w = gray.shape[:2]
        if self.pre["method"] == "patch":
            size = int(self.pre["size"])
            work = resize(gray, (size, size))
            patch = int(self.pre["patch"])
            fn = equalize if self.pre.get("enhance") == "equalize" else None
            windows = [] if trace is not None else None
            prob = tiled_predict(self.net, work, patch, stride=patch // 2, window_fn=fn, soft=True, batch=4,
                                 flip=self.flip, fixed_window=True, trace=windows)
            if trace is not None:
                trace.update(resized=work, windows=windows, window=patch)
        elif self.pre["method"] == "whole":
            scale = self.scale(fov)
            scaled = rescale(gray, scale)
            work = enhance(scaled, self.pre.get("enhance", "none"))
            windows = [] if trace is not None else None
            prob = self.network_maps(work, windows)
            if trace is not None:
                trace.update(scale=scale, resized=scaled, enhanced=work, windows=windows, window=self.tile)
        else:
            raise ValueError(f"unknown method {self.pre['method']!r}")
        maps = prob[None] if prob.ndim == 2 else prob
        if trace is not None:
            trace.update(gray=gray, blended=maps[0].copy(), fov=fov, method=self.pre["method"])
        outs = []
        for m in maps:
            if self.pre["method"] == "whole":
                m = upsample_map(m, (w, h))
            elif m.shape != (h, w):  # the patch method resizes back as the original did
                m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
            outs.append(np.clip(m, 0.0, 1.0))
        out = outs[0][None] if len(outs) == 1 else np.stack(outs)  # one map: no copy (8-megapixel memory)
        if trace is not None:
            trace["full"] = out[0].copy()  # the photograph's size, before the FOV is cleared
        out[:, ~fov] = 0.0
        if self.edge_line:
            self.clear_edge_lines(out, fov, threshold)
        return out

    def clear_edge_lines(self, out, fov, threshold=None):
        """Clear from the maps ``out`` (K x H x W, in place), in the outer ring of ``fov`` (depth from the mask's
        edge, the image's border included, <= edge_line["depth"] x the FOV diameter), every piece of the vessel
        mask (the first map at ``threshold``, else the model's, 8-connected, inside the ring) longer along the edge than
        edge_line["length"] x the diameter (its pixel count over the ring's depth). A vessel crosses the edge
        and leaves a short piece there; a line drawn along the edge (the A/V model on STARE's scanned rim, where
        an estimated FOV takes in the dark ramp) leaves a long one. Chosen on training photographs
        (docs/experiments.md, Session 28)."""
        d = fov_diameter(fov)
        r = self.edge_line["depth"] * d
        depth = fov_depth(fov)
        ring = fov & (depth <= r)
        pieces = ((out[0] >= (self.threshold if threshold is None else threshold)) & ring).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(pieces, connectivity=8)
        if n <= 1:
            return
        long_ = np.concatenate([[False], stats[1:, cv2.CC_STAT_AREA] / max(r, 1.0) > self.edge_line["length"] * d])
        out[:, long_[labels]] = 0.0

    def network_maps(self, work, trace=None):
        """Every output of the whole-image network on ``work``, an image already at its working scale
        and enhanced (what ``maps`` makes of a photograph, and what training feeds the network):
        float32 K x H x W. ``trace``: ``tiled_predict``'s."""
        prob = tiled_predict(self.net, work, self.tile, margin=16 * self.net.align, flip=self.flip, trace=trace)
        return prob[None] if prob.ndim == 2 else prob

    def segment(self, image, fov=None, threshold=None, trace=None):
        """(probability map, boolean vessel mask) for one image; ``threshold`` overrides the stored one."""
        image = as_image(image)
        if fov is None:
            fov = estimate_fov(image)
        prob = self.probability(image, fov, trace, threshold)
        return prob, self.mask(prob, fov, threshold)

    def require_av(self, name="this model"):
        """Refuse, in one line, a vessel-only model where arteries and veins are asked for."""
        if self.classes != "av":
            raise UserError(f"{name} is a vessel-only model: arteries and veins need an artery/vein model "
                            f"({AV_WEIGHTS}, or train one with: python train.py --av --dataset DRIVE-AV)")

    def segment_av(self, image, fov=None, threshold=None, vote=True):
        """An artery/vein model's (vessel probability, vessel mask, artery-given-vessel probability,
        class map 0/1/2: ``kinds``)."""
        image = as_image(image)
        if fov is None:
            fov = estimate_fov(image)
        self.require_av()
        maps = self.maps(image, fov, threshold=threshold)
        mask = self.mask(maps[0], fov, threshold)
        return maps[0], mask, maps[1], self.kinds(mask, maps[1], fov, vote)

    def kinds(self, mask, p_artery, fov, vote=True):
        """The class map of a vessel mask (av.assign): segment by segment, the segments cut at the scale
        this model segments a photograph with this FOV at, unless ``vote`` is False."""
        from av import assign

        return assign(mask, p_artery, vote, self.scale(fov))

    def mask(self, prob, fov, threshold=None):
        """The vessel mask of a map: ``postprocess.vessel_mask`` at the stored threshold (or
        ``threshold``), with this Segmenter's bridging, thin vessels and speck removal."""
        return vessel_mask(prob, self.threshold if threshold is None else threshold, fov_diameter(np.asarray(fov, bool)),
                           self.bridge, self.min_fragment, thin=self.thin)


def prediction_main(default_weights, doc, train_hint):
    """Build the ``main(argv=None)`` of predict.py / predict_through_patch.py (one implementation).

    Under ``torchrun`` the images are split across the processes (every WORLD_SIZE-th from RANK:
    each segmented exactly once), outputs go atomically into the shared --output folder and rank 0
    prints the summary.
    """
    import argparse
    import sys
    import time

    from tqdm import tqdm

    import distributed
    from cli import bounded, run_main, shipped, warn, writable_dir
    from disc import COLUMNS as DISC_COLUMNS, find_disc, read_disc_json, write_disc_json
    from imio import is_image_file, list_images, read_image, stem, write_csv, write_png, write_probability
    from postprocess import add_postprocess_args
    from morphometry import (add_scale_args, failed_row, image_files, measure_and_write, read_json, write_json,
                             write_table)

    @run_main
    def main(argv=None):
        p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--input", default=None,
                       help="an image or a folder of images (default: predict/img.png -> result/res.png)")
        p.add_argument("--output", default="result", help="output folder (default: %(default)s)")
        p.add_argument("--weights", default=None,
                       help="model file: .onnx runs through ONNX Runtime without PyTorch, .pth through PyTorch "
                            f"(default: {default_weights}, exported from {default_weights[:-5]}.pth; with --av: "
                            f"{AV_WEIGHTS}; from the current folder, else the shipped one beside this script)")
        p.add_argument("--av", action="store_true",
                       help="also tell arteries from veins (an artery/vein model, train.py --av): NAME_av.png, the "
                            "vessels coloured arteries red, veins blue (RITE's colours), each segment between branch "
                            "points one class; with --prob NAME_artery_prob.png and NAME_vein_prob.png; with "
                            "--measure CRAE, CRVE, AVR and the artery- and vein-only measures")
        p.add_argument("--av-pixels", action="store_true",
                       help="with --av: classify pixel by pixel instead of segment by segment")
        p.add_argument("--prob", action="store_true",
                       help="also write NAME_prob.png, the probability map as a 16-bit PNG (0-65535 = 0-1)")
        p.add_argument("--threshold", type=bounded(float, 0, 1, lo_open=True, hi_open=True), default=None,
                       help="override the threshold stored in the weights (chosen on validation images), 0 < T < 1")
        add_postprocess_args(p)
        p.add_argument("--tta", action="store_true", help="average with a horizontally flipped pass (slower)")
        p.add_argument("--no-rescale", action="store_true",
                       help="do not rescale images whose field of view differs from the training scale")
        p.add_argument("--detail", type=bounded(float, 1, MAX_UPSCALE), default=None,
                       help="segment a photograph larger than the training scale at up to DETAIL times that "
                            "scale, 1..4 (default: the value stored in the model; 1 for models trained without it)")
        p.add_argument("--skip-existing", action="store_true",
                       help="skip images whose outputs already exist (continue an interrupted run)")
        p.add_argument("--measure", action="store_true",
                       help="also measure each mask (as measure.py: NAME_measurements.json, and OUTPUT/measurements.csv "
                            "for all images)")
        p.add_argument("--disc", action="store_true",
                       help="also find the optic disc (disc.py): OUTPUT/disc.csv, its centre, radius, confidence, "
                            "the eye's side and the field per image (also in --measure's table)")
        add_scale_args(p)
        distributed.add_device_arg(p)
        args = p.parse_args(argv)
        if args.weights is None:  # the shipped model, found beside the scripts when run from another folder
            args.weights = shipped(AV_WEIGHTS if args.av else default_weights)

        rank, size, _ = distributed.world()
        out_dir = Path(args.output)
        if args.input is None:
            jobs = [(Path("predict/img.png"), out_dir / "res.png")]
        else:
            src = Path(args.input)
            if src.is_dir():
                files = list_images(src)
                if not files:
                    raise UserError(f"no images in {src}")
            elif src.is_file():
                if not is_image_file(src):
                    raise UserError(f"{src}: not an image file (expected .png, .jpg, .tif, .gif, .ppm, ...)")
                files = [src]
            else:
                raise UserError(f"input {src} not found")
            jobs = [(f, out_dir / f"{stem(f)}.png") for f in files]
        if not jobs[0][0].exists() and args.input is None:
            raise UserError(f"{jobs[0][0]} not found: put the image to segment there, or pass --input FILE_OR_DIR")
        writable_dir(out_dir)
        hint = train_hint if Path(args.weights).name != AV_WEIGHTS else \
            (" (the shipped one is the 8-bit copy of UNet_AV.pth: python export_onnx.py UNet_AV.pth --int8 "
             "DRIVE-AV/train/image LES-AV/train/image --out UNet_AV.onnx; or --weights UNet_AV.pth; "
             "train with: python train.py --av)")
        seg = Segmenter.from_file(args.weights, hint=hint, device=args.device, rescale=not args.no_rescale,
                                  flip=args.tta, detail=args.detail, bridge=args.bridge,
                                  min_fragment=args.min_fragment, thin=args.thin_vessels)
        if args.tree:
            seg.use_tree(args.weights)
        if args.threshold is not None:
            seg.threshold = args.threshold
        if args.av:
            seg.require_av(args.weights)

        def done_before(dst):
            return dst.is_file() and (not args.prob or dst.with_name(dst.stem + "_prob.png").is_file()) and \
                (not args.av or dst.with_name(dst.stem + "_av.png").is_file()) and \
                (not (args.av and args.prob) or dst.with_name(dst.stem + "_vein_prob.png").is_file()) and \
                (not args.measure or read_json(image_files(out_dir, dst.stem)["json"]) is not None) and \
                (not args.disc or read_disc_json(out_dir / f"{dst.stem}_disc.json") is not None)

        total = len(jobs)
        skipped = [j for j in jobs if done_before(j[1])] if args.skip_existing else []
        todo = [j for j in jobs if j not in skipped]
        mine = distributed.shard(todo)
        failed, times = [], []
        warned_gray = False
        single = total == 1 and size == 1
        for src, dst in tqdm(mine, desc="segmenting", disable=None if len(mine) > 1 and rank == 0 else True,
                             file=sys.stderr):
            try:
                image = read_image(src)
                if image.ndim == 2 and seg.needs_colour and not warned_gray:
                    warn(f"{src.name} is a gray image: {Path(args.weights).name} also reads the green channel of "
                         f"colour photographs, and sees the gray level instead (results may be a little worse)")
                    warned_gray = True
                t0 = time.perf_counter()
                fov = estimate_fov(image)
                if args.av:
                    prob, mask, p_artery, classes = seg.segment_av(image, fov, vote=not args.av_pixels)
                else:
                    (prob, mask), classes = seg.segment(image, fov), None
                times.append(time.perf_counter() - t0)
            except UserError as exc:
                if single:
                    raise
                warn(str(exc))
                failed.append(src.name)
                if args.measure:
                    write_json(image_files(out_dir, dst.stem)["json"], failed_row(dst.stem, str(exc)))
                continue
            try:
                write_png(dst, mask)
                if args.prob:
                    write_probability(dst.with_name(dst.stem + "_prob.png"), prob)
                if args.av:
                    from av import kind_probabilities, to_colour

                    write_png(dst.with_name(dst.stem + "_av.png"), to_colour(classes))
                    if args.prob:
                        for kind, p_kind in zip(("artery", "vein"), kind_probabilities(prob, p_artery)):
                            write_probability(dst.with_name(f"{dst.stem}_{kind}_prob.png"), p_kind)
                disc = find_disc(image, mask, fov) if args.disc else None  # found once, for both
                if args.disc:
                    write_disc_json(out_dir / f"{dst.stem}_disc.json", dst.stem, disc)
                if args.measure:
                    measure_and_write(dst.stem, mask, out_dir, fov=fov, fov_source="estimated from the photograph",
                                      photo=image, disc=disc, av_classes=classes, um_per_px=args.um_per_px,
                                      fov_degrees=args.fov_degrees,
                                      min_segment_px=args.min_segment, segments=args.segments, overlay=args.overlay)
            except OSError as exc:
                raise UserError(f"cannot write {dst}: {exc.strerror or exc}") from None
        distributed.init(None)
        parts = distributed.gather((len(times), times, failed))
        distributed.shutdown()
        if rank != 0:
            return
        times = [t for _, ts, _ in parts for t in ts]
        failed = [f for _, _, fs in parts for f in fs]
        where = jobs[0][1] if total == 1 else out_dir
        split = f" on {size} processes ({' + '.join(str(n) for n, _, _ in parts)})" if size > 1 else ""
        skip = f", {len(skipped)} skipped (already done)" if skipped else ""
        print(f"segmented {len(times)} image(s){split}{skip} -> {where} "
              f"({np.median(times) if times else 0:.3f} s per image, median)")
        if args.measure:
            rows = [read_json(image_files(out_dir, dst.stem)["json"]) for _, dst in jobs]
            rows = [r for r in rows if r is not None]
            write_table(out_dir / "measurements.csv", rows)
            print(f"measured {len(rows)} image(s) -> {out_dir / 'measurements.csv'}")
        if args.disc:
            rows = [r for r in (read_disc_json(out_dir / f"{dst.stem}_disc.json") for _, dst in jobs) if r]
            write_csv(out_dir / "disc.csv", rows, ["image"] + DISC_COLUMNS)
            print(f"found the disc in {sum(bool(r['disc_found']) for r in rows)} of {len(rows)} image(s) "
                  f"-> {out_dir / 'disc.csv'}")
        if failed:
            raise UserError(f"{len(failed)} of {total} images could not be read: {', '.join(failed[:5])}")

    return main
