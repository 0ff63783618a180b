"""Measure the vessel tree: density, length, calibre, tortuosity, fractal dimension and branching.

    python measure.py                                 # result/res.png -> result/measurements.csv
    python measure.py --input masks/ --photos photos/ --overlay --segments --fov-degrees 45
    python measure.py --input photos/                 # photographs: segmented first (UNet.onnx)
    torchrun --standalone --nproc_per_node=4 measure.py --input archive/ --output out/measurements.csv --skip-existing

Inputs are binary vessel masks (two values, e.g. 0/255 PNGs from predict.py), measured as they
are, or photographs (anything else), segmented first with the same model flags as predict.py.
The field of view (FOV) comes from --fov masks, else from the photograph (--photos, or the input
photograph itself), else it is the whole image (the fov_source column says which). Every image
gets a row in the CSV (column names carry the unit) and a NAME_measurements.json beside it; one
that cannot be measured gets a row with empty values and the reason in "note". With a photograph,
the optic disc is found in it (disc.py: centre, radius, confidence, the eye's side, the field) and
every measure is taken again in zones B and C around it (columns zoneB_..., zoneC_...). Definitions,
constants and sources: the docstrings of morphometry.py and disc.py, and the README.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

import distributed
from cli import UserError, bounded, run_main, shipped, warn, writable_dir
from imio import is_image_file, list_images, read_image, stem
from postprocess import add_postprocess_args

DEFAULT_MASK = Path("result/res.png")
DEFAULT_PHOTO = Path("predict/img.png")


def get_args(argv=None):
    from inference import MAX_UPSCALE
    from morphometry import add_scale_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=None,
                   help=f"a mask or photograph, or a folder of them (default: {DEFAULT_MASK}, with {DEFAULT_PHOTO} "
                        "as its photograph)")
    p.add_argument("--output", default="result/measurements.csv",
                   help="the per-image table; the per-image files go beside it (default: %(default)s)")
    p.add_argument("--photos", default=None,
                   help="the photographs of the masks (a file, or a folder matched by name): their FOV is used "
                        "and the overlays are drawn over them")
    p.add_argument("--fov", default=None, help="FOV masks (a file, or a folder matched by NAME or NAME_mask)")
    p.add_argument("--av", default=None,
                   help="artery/vein maps (a file, or a folder matched by NAME or NAME_av; one channel, 0 background, "
                        "1 artery, 2 vein, 3 uncertain, or the colour map predict.py --av writes): CRAE, CRVE and AVR in zone B (Knudtson et al. 2003; av.py). "
                        "Needs the disc, so the photographs")
    add_scale_args(p)
    p.add_argument("--skip-existing", action="store_true",
                   help="reuse the NAME_measurements.json of images measured before (continue an interrupted run)")
    p.add_argument("--workers", type=bounded(int, 1), default=None,
                   help="processes measuring in parallel (default: the number of CPU cores; 1 under torchrun)")
    g = p.add_argument_group("segmenting photographs (as predict.py)")
    g.add_argument("--weights", default=None,
                   help="model file, .onnx or .pth (default: UNet.onnx, the shipped one when the current folder has none)")
    g.add_argument("--threshold", type=bounded(float, 0, 1, lo_open=True, hi_open=True), default=None,
                   help="override the threshold stored in the weights")
    g.add_argument("--tta", action="store_true", help="average with a horizontally flipped pass")
    g.add_argument("--no-rescale", action="store_true", help="do not rescale photographs by their FOV")
    g.add_argument("--detail", type=bounded(float, 1, MAX_UPSCALE), default=None,
                   help="segment large photographs at up to DETAIL times the training scale")
    add_postprocess_args(g)
    distributed.add_device_arg(g)
    args = p.parse_args(argv)
    if args.weights is None:
        args.weights = shipped("UNet.onnx")
    return args


def _files(arg, what):
    src = Path(arg)
    if src.is_dir():
        files = list_images(src, what)
        if not files:
            raise UserError(f"no images in {src}")
        return files
    if src.is_file():
        if not is_image_file(src):
            raise UserError(f"{src}: not an image file (expected .png, .jpg, .tif, .gif, .ppm, ...)")
        return [src]
    raise UserError(f"{what} {src} not found")


def _matcher(arg, what, suffixes=("",)):
    """NAME -> the file of ``arg`` (a file: always it; a folder: NAME + one of ``suffixes``)."""
    if arg is None:
        return lambda name: None
    files = _files(arg, what)
    if Path(arg).is_file():
        return lambda name: files[0]
    by_stem = {stem(f): f for f in files}
    return lambda name: next((by_stem[name + s] for s in suffixes if name + s in by_stem), None)


COMPANIONS = ("_prob", "_av", "_artery_prob", "_vein_prob")  # what predict.py writes beside NAME.png


def _companion(f, names):
    """Whether ``f`` is one of the files predict.py writes beside a mask NAME.png (NAME in ``names``):
    its probability maps, its artery/vein map; measured with the mask, not as a mask of its own."""
    return any(stem(f).endswith(c) and stem(f)[: -len(c)] in names for c in COMPANIONS)


def _same_size(a, b):
    from PIL import Image

    try:
        with Image.open(a) as x, Image.open(b) as y:
            return x.size == y.size
    except OSError:
        return False


def is_binary(arr):
    """A mask: one gray plane with at most two values."""
    if arr.ndim != 2:
        return False
    return int(np.count_nonzero(np.bincount(arr.ravel(), minlength=256))) <= 2


_SEGMENTER = None


class ModelError(UserError):
    """The model cannot be loaded: every photograph would fail the same way, so the run stops."""


def _segmenter(opts):
    global _SEGMENTER
    if _SEGMENTER is None:
        from inference import Segmenter

        try:
            _SEGMENTER = Segmenter.from_file(opts["weights"], device=opts["device"], rescale=not opts["no_rescale"],
                                             flip=opts["tta"], detail=opts["detail"], bridge=opts["bridge"],
                                             min_fragment=opts["min_fragment"], thin=opts["thin_vessels"])
            if opts["tree"]:
                _SEGMENTER.use_tree(opts["weights"])
        except UserError as exc:
            raise ModelError(str(exc)) from None
        if opts["threshold"] is not None:
            _SEGMENTER.threshold = opts["threshold"]
    return _SEGMENTER


def measure_job(job, opts):
    """Measure one input (a worker's task); returns its row. Bad inputs give a failed row, never raise."""
    from imio import read_mask
    from morphometry import measure_and_write
    from preprocess import estimate_fov

    name, src, photo_path, fov_path, av_path = job
    try:
        arr = read_image(src)
        photo = None
        if is_binary(arr):
            mask = arr > (arr.max() // 2 if arr.max() > 1 else 0)
            if photo_path is not None:
                photo = read_image(photo_path)
                if photo.shape[:2] != mask.shape:
                    return _failed(name, opts, f"the mask is {mask.shape[1]}x{mask.shape[0]} but its photograph "
                                               f"{photo_path.name} is {photo.shape[1]}x{photo.shape[0]}: not measured")
        else:
            if stem(src).endswith("_prob"):
                return _failed(name, opts, "a probability map, not a mask or a photograph: measure the mask "
                                           "(predict.py writes it as NAME.png)")
            photo = arr
            _, mask = _segmenter(opts).segment(photo)
        if fov_path is not None:
            fov, fov_source = read_mask(fov_path), f"file {fov_path.name}"
            if fov.shape != mask.shape:
                return _failed(name, opts, f"the FOV mask {fov_path.name} is {fov.shape[1]}x{fov.shape[0]} but the "
                                           f"mask {mask.shape[1]}x{mask.shape[0]}: not measured")
        elif photo is not None:
            fov, fov_source = estimate_fov(photo), "estimated from the photograph"
        else:
            fov, fov_source = None, "whole image (no photograph or FOV mask given)"
        classes = None
        if av_path is not None:
            from av import AVLabelError, read_classes

            try:
                classes = read_classes(read_image(av_path), av_path.name)
            except AVLabelError as exc:
                return _failed(name, opts, str(exc))
            if classes.shape != mask.shape:
                return _failed(name, opts, f"the artery/vein map {av_path.name} is {classes.shape[1]}x{classes.shape[0]} "
                                           f"but the mask {mask.shape[1]}x{mask.shape[0]}: not measured")
        return measure_and_write(name, mask, opts["folder"], fov=fov, fov_source=fov_source, photo=photo,
                                 av_classes=classes,
                                 um_per_px=opts["um_per_px"], fov_degrees=opts["fov_degrees"],
                                 min_segment_px=opts["min_segment"], segments=opts["segments"],
                                 overlay=opts["overlay"])
    except ModelError:
        raise
    except UserError as exc:
        return _failed(name, opts, str(exc))


def _failed(name, opts, reason):
    from morphometry import failed_row, write_json

    row = failed_row(name, reason)
    write_json(Path(opts["folder"]) / f"{name}_measurements.json", row)
    return row


def _run(jobs, opts, workers, show):
    """Measure ``jobs`` with ``workers`` processes (1: in this process), with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="measuring", disable=None if show else True, file=sys.stderr)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            measure_job(job, opts)
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # no ONNX Runtime or thread state inherited
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for fut in as_completed([pool.submit(measure_job, job, opts) for job in jobs]):
                fut.result()
                bar.update()
    bar.close()


@run_main
def main(argv=None):
    from morphometry import image_files, read_json, write_table

    args = get_args(argv)
    rank, size, _ = distributed.world()
    out = Path(args.output)
    if out.suffix.lower() != ".csv":
        raise UserError(f"--output {out}: give the name of the CSV table to write (e.g. result/measurements.csv)")
    folder = writable_dir(out.parent if str(out.parent) else Path("."))
    if args.input is None:
        if not DEFAULT_MASK.is_file():
            raise UserError(f"{DEFAULT_MASK} not found: segment a photograph first (python predict.py), "
                            "or pass --input MASK_OR_PHOTO_OR_FOLDER")
        files = [DEFAULT_MASK]
        photos = _matcher(args.photos or (DEFAULT_PHOTO if DEFAULT_PHOTO.is_file() else None), "photograph")
    else:
        files = _files(args.input, "input")
        if Path(args.input).is_dir():
            names = {stem(f) for f in files}
            files = [f for f in files if not _companion(f, names)]
        photos = _matcher(args.photos, "photographs")
    fovs = _matcher(args.fov, "FOV masks", ("", "_mask"))
    avs = _matcher(args.av, "artery/vein maps", ("_av", ""))
    names, jobs = set(), []
    for f in files:
        name = stem(f)
        if name in names:
            raise UserError(f"two inputs are named {name}: their outputs would overwrite each other")
        names.add(name)
        jobs.append((name, f, photos(name) if args.photos or args.input is None else None, fovs(name), avs(name)))
    if args.input is None and args.photos is None and jobs[0][2] is not None and not _same_size(*jobs[0][1:3]):
        jobs[0] = jobs[0][:2] + (None,) + jobs[0][3:]  # predict/img.png is not the photograph of this mask
    opts = dict(vars(args), folder=str(folder))
    done = {j[0] for j in jobs if args.skip_existing and read_json(image_files(folder, j[0])["json"]) is not None}
    todo = distributed.shard([j for j in jobs if j[0] not in done])
    workers = args.workers or (1 if size > 1 else os.cpu_count() or 1)
    _run(todo, opts, min(workers, max(len(todo), 1)), show=rank == 0 and len(todo) > 1)
    counts = [len(todo)]
    if size > 1:
        distributed.init(None)
        counts = distributed.gather(len(todo))  # waits for every process before the table is assembled
        distributed.shutdown()
    if rank != 0:
        return
    rows = []
    for name, *_ in jobs:
        row = read_json(image_files(folder, name)["json"])
        rows.append(row if row is not None else {"image": name, "status": "failed", "note": "no result written"})
    write_table(out, rows)
    failed = [r for r in rows if r.get("status") == "failed"]
    skip = f", {len(done)} reused (--skip-existing)" if done else ""
    split = f" on {size} processes ({' + '.join(map(str, counts))})" if size > 1 else ""
    print(f"measured {len(rows) - len(failed)} of {len(rows)} image(s){split}{skip} -> {out}")
    for r in failed[:5]:
        warn(f"{r['image']}: {r['note']}")
    if failed and len(rows) == 1:
        raise UserError(f"{rows[0]['image']} could not be measured: {rows[0]['note']}")


if __name__ == "__main__":
    main()
