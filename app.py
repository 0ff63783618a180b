"""The system interface: a local web page to segment fundus photographs, see how the method works,
check a result against a manual annotation and segment a batch -- no terminal needed.

    python app.py                        # then open http://127.0.0.1:7860 in a browser
    python app.py --port 8080
    python app.py --host 0.0.0.0         # reachable from the network: anyone there can use it

Everything the page does goes through the same Segmenter as predict.py (same preprocessing,
threshold and FOV) and the same metrics as evaluate.py. The models offered are the weights files
found beside this script (.onnx preferred: no PyTorch needed; .pth otherwise).
"""
import argparse
import atexit
import contextlib
import csv
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from cli import UserError, bounded, run_main  # noqa: E402
from imio import atomic_replace, is_image_file, read_image, read_mask, stem, write_csv, write_png, write_probability  # noqa: E402
from inference import Segmenter, load_net  # noqa: E402
from morphometry import COLUMNS as MEASURE_COLUMNS, draw_zones, measure_with_zones, overlays, readable  # noqa: E402
from preprocess import estimate_fov, fov_diameter, resize  # noqa: E402
import topology  # noqa: E402

HERE = Path(__file__).resolve().parent
SHIPPED = {  # file stem -> the name shown in the page
    "UNet": "DRIVE, whole image",
    "UNet_patch_equalized_patch_256_50": "DRIVE, patch method (original)",
    "UNet_fast": "DRIVE, fast",
    "UNet_STARE": "STARE",
    "UNet_AV": "DRIVE-AV + LES-AV, arteries and veins",
}
NOT_VESSEL_MODELS = {"DISC"}  # the optic disc model (disc.py) is not offered as a vessel model
SAMPLES = [str(HERE / "predict" / "img.png")]
# more photographs to click when the public datasets are on this computer (they may not be copied into the
# repository): a STARE photograph and a 2048x2048 FIVES one
DATA = Path(os.environ.get("RETINA_DATA", HERE.parent / "shared" / "data"))
MORE_EXAMPLES = [("STARE im0162 (700x605)", DATA / "STARE" / "stare-images" / "im0162.ppm.gz"),
                 ("FIVES 10_A (2048x2048)", DATA / "FIVES-mini" / "image" / "10_A.png")]
PREVIEW_SIDE = 720  # the uploaded photograph is shown at most this large
MAX_BATCH_FILES = 500
MAX_ZIP_BYTES = 2 * 2**30  # uncompressed size of an uploaded zip
KEEP_OUTPUTS_S = 15 * 60  # downloads stay available this long
# the largest photograph the page accepts: 40 megapixels (a 7360x4912 camera: 36 MP); checked from the file's
# header before decoding, so a 100-megapixel upload costs no memory (it took 4.6 GB and 40 s before the limit)
MAX_PIXELS = 40_000_000
CONCURRENT = os.cpu_count() or 1  # requests served at once
VESSEL_RGB = (255, 220, 0)  # overlay colour
TP_RGB, FP_RGB, FN_RGB = (255, 255, 255), (230, 40, 40), (40, 120, 255)


# --------------------------------------------------------------------------- models

def find_models(folder=HERE):
    """{shown name: weights path}: the shipped models first, each as .onnx when present, else .pth."""
    folder = Path(folder)
    stems = {}
    for path in sorted(folder.glob("*.onnx")) + sorted(folder.glob("*.pth")):
        if path.name.endswith(".resume.pth") or path.stem in NOT_VESSEL_MODELS:
            continue
        stems.setdefault(path.stem, path)  # .onnx came first
    order = [s for s in SHIPPED if s in stems] + sorted(s for s in stems if s not in SHIPPED)
    return {SHIPPED.get(s, f"{s} ({stems[s].suffix[1:]})"): stems[s] for s in order}


class Models:
    """Each weights file is loaded once and shared by every request (loading is locked)."""

    def __init__(self, paths):
        self.paths = dict(paths)
        self._nets = {}
        self._lock = threading.Lock()

    def get(self, name, tta=False, bridge=False, min_fragment=0, thin=0.0):
        if name not in self.paths:
            raise UserError(f"unknown model {name!r}; choose one of: {', '.join(self.paths)}")
        with self._lock:
            if name not in self._nets:
                self._nets[name] = load_net(self.paths[name])
        net, meta = self._nets[name]
        # a Segmenter is a light view on the shared network: per-request settings never leak
        return Segmenter(net, meta["preprocess"], meta["threshold"], flip=tta, bridge=bridge, min_fragment=min_fragment,
                         thin=thin, tree=meta.get("tree"))

    def threshold(self, name):
        return self.get(name).threshold

    def tree(self, name):
        """The model's tree setting (tree_threshold.py), or None."""
        return self.get(name).tree

    def classes(self, name):
        """"vessel", or "av" for an artery/vein model (inference.Segmenter.classes)."""
        return self.get(name).classes


# --------------------------------------------------------------------------- files and pictures

class Outputs:
    """Per-request folders for downloads, removed after KEEP_OUTPUTS_S (and at exit)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="retina-app-"))
        atexit.register(shutil.rmtree, self.root, True)

    def new(self):
        now = time.time()
        for old in self.root.iterdir():
            if now - old.stat().st_mtime > KEEP_OUTPUTS_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder


def as_rgb(image):
    return np.dstack([image] * 3) if image.ndim == 2 else image


def channels_view(image):
    """A network input for display: HxW as it is; HxWxC (one channel per kind of ensemble member,
    e.g. gray and green) as the C channels side by side."""
    if image.ndim == 3 and image.shape[2] != 3:
        return np.hstack([image[..., i] for i in range(image.shape[2])])
    return image


def overlay(image, mask):
    """The photograph with the vessels painted over it."""
    out = as_rgb(image).astype(np.float32)
    out[mask] = 0.35 * out[mask] + 0.65 * np.array(VESSEL_RGB, np.float32)
    return out.astype(np.uint8)


def to_u8(prob):
    return np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)


def error_map(label, mask, fov):
    """True positives white, false positives red, false negatives blue, inside the FOV."""
    out = np.zeros(label.shape + (3,), np.uint8)
    out[fov] = (24, 24, 24)
    out[mask & label & fov] = TP_RGB
    out[mask & ~label & fov] = FP_RGB
    out[~mask & label & fov] = FN_RGB
    return out


def centreline_map(label, mask, fov):
    """The annotated vessels faint, the annotated centreline the model covers white, the pieces of it
    the model misses blue, the model's centreline outside the annotation red (topology.centreline_pieces);
    lines thickened for large photographs."""
    covered, missed, false = topology.centreline_pieces(mask, label, fov)
    out = np.zeros(label.shape + (3,), np.uint8)
    out[fov] = (24, 24, 24)
    out[label & fov] = (70, 70, 70)
    k = max(1, round(max(label.shape) / 500))
    grow = (lambda m: cv2.dilate(m.astype(np.uint8), np.ones((2 * k - 1, 2 * k - 1), np.uint8)) > 0) if k > 1 else \
        (lambda m: m)
    out[grow(covered)] = TP_RGB
    out[grow(missed)] = FN_RGB
    out[grow(false)] = FP_RGB
    return out


def mosaic(tiles, gap=6):
    """Square tiles side by side in a near-square grid (for the patch views)."""
    n = len(tiles)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    th, tw = tiles[0].shape[:2]
    out = np.full((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = t
    return out


def draw_windows(gray, windows, size):
    out = as_rgb(gray).copy()
    colours = [(255, 80, 80), (80, 200, 80), (80, 140, 255), (255, 200, 0)]
    for i, (y, x, _, _) in enumerate(windows):
        cv2.rectangle(out, (x + 1, y + 1), (x + size - 2, y + size - 2), colours[i % len(colours)], 2)
    return out


def read_upload(path, what="photograph", reader=None):
    """Read an uploaded file (a photograph: at most MAX_PIXELS); errors name the file as the user knows
    it, not the server's temporary path."""
    if not path:
        raise UserError(f"no {what}: upload one first (or pick the sample)")
    try:
        return reader(Path(path)) if reader else read_image(Path(path), max_pixels=MAX_PIXELS)
    except UserError as exc:
        raise UserError(str(exc).replace(str(path), Path(path).name)) from None


def figures(image, fov, mask, seconds):
    h, w = image.shape[:2]
    return {"image size": f"{w} x {h} px", "FOV diameter": f"{fov_diameter(fov):.0f} px",
            "vessel area inside the FOV": f"{100 * mask[fov].mean():.2f} %" if fov.any() else "-",
            "segmentation (the model, on the server)": f"{seconds:.3f} s"}


def as_markdown(rows, head=("", "")):
    return f"| {head[0]} | {head[1]} |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items())


# the metrics of the Check tab, in words
METRIC_NAMES = {
    "auc_roc": ("AUC (ROC)", "area under the ROC curve of the probability: 1 = every vessel pixel ranked above every other"),
    "auc_pr": ("AUC (precision-recall)", "area under the precision-recall curve of the probability"),
    "f1": ("F1 (Dice)", "2 x overlap / (found + annotated vessel pixels)"),
    "accuracy": ("accuracy", "pixels right, vessel or not"),
    "sensitivity": ("sensitivity (recall)", "annotated vessel pixels found"),
    "specificity": ("specificity", "background pixels left as background"),
    "mcc": ("Matthews correlation", "correlation of found and annotated, -1 to 1: fair when vessels are few"),
    "iou": ("IoU (Jaccard)", "overlap / union of found and annotated vessel pixels"),
    **{k: (topology.NAMES[k], topology.MEANINGS[k]) for k in topology.COLUMNS},
}


def metric_text(key, value):
    """One Check-tab value as written: relative errors as signed percentages, counts whole."""
    if value is None:
        return "- (nothing to compare)"
    if key in ("length_error", "branch_error", "end_error"):
        return f"{value:+.1%}"
    if key in ("betti0_error", "betti1_error"):
        return f"{value:.0f}"
    return f"{value:.4f}"


def metrics_markdown(rows):
    """The Check tab's metrics as a table: the name written out, the value, what it means."""
    lines = ["| metric | value | what it measures |", "|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 (a "|" would end the cell)
    for k, v in rows.items():
        name, what = METRIC_NAMES.get(k, (k, ""))
        lines.append(f"| {cell(name)} | {cell(v)} | {cell(what)} |")
    return "\n".join(lines)


BATCH_COLUMNS = ["image", "mask", "width", "height", "fov_diameter_px", "vessel_fraction_in_fov", "seconds", "error"]
# results.csv also has every vessel measurement (measure.py's columns); the page's table shows a few
MEASURED = [c for c in MEASURE_COLUMNS if c not in ("image", "width_px", "height_px", "fov_diameter_px", "status", "note")]
AV_RESULTS = ["av_map", "crae_px", "crve_px", "avr", "n_arteries_zoneB", "n_veins_zoneB", "av_note"]  # A/V models
RESULT_COLUMNS = BATCH_COLUMNS + ["measure_note"] + MEASURED + AV_RESULTS
SHOWN_MEASURES = ["centreline_length_px", "mean_calibre_px", "fd_mask", "distance_factor", "n_branch_points"]


def measurement_table(row):
    """The measurements of one mask as a Markdown table with units; the reasons for what is missing below it."""
    lines = ["| measure | value | unit |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {unit} |" for name, value, unit in readable(row)]
    for key in ("note", "disc_note", "zone_note"):
        if row.get(key):
            lines.append(f"\n{row[key]}")
    return "\n".join(lines)


def av_measures(image, mask, classes, fov, disc=None):
    """(CRAE, CRVE, AVR row of av.measure_av, disc) of a photograph's vessel mask and artery/vein classes
    (Segmenter.segment_av) round ``disc`` (a row with disc.py's columns), else the disc found as
    predict.py --av --measure finds it."""
    from av import measure_av
    from disc import find_disc

    disc = find_disc(image, mask, fov) if disc is None else disc
    return measure_av(classes, fov, disc), disc


def av_markdown(row, seconds):
    """The A/V figures of one photograph as a Markdown table (pixels; units and method in the README)."""
    def num(v, f):
        return "–" if v is None else f.format(v)
    rows = {"CRAE (central retinal arteriolar equivalent)": num(row["crae_px"], "{:.2f} px"),
            "CRVE (central retinal venular equivalent)": num(row["crve_px"], "{:.2f} px"),
            "AVR (CRAE / CRVE)": num(row["avr"], "{:.3f}"),
            "arteries / veins crossing zone B": f"{row['n_arteries_zoneB'] or 0} / {row['n_veins_zoneB'] or 0}",
            "time (segmenting, classifying, disc, zone B)": f"{seconds:.2f} s"}
    if row["av_note"]:
        rows["note"] = row["av_note"]
    return as_markdown(rows, ("figure", "value"))


def batch_summary(rows, total):
    """The Batch tab's last line: how many were segmented, how many failed, whether it was stopped."""
    failed = sum(1 for r in rows if r.get("error"))
    ok = len(rows) - failed
    text = f"All {total} segmented." if ok == total else f"{ok} of {total} segmented"
    if failed:
        text += f"; {failed} could not be segmented — see results.csv."
    elif ok != total:
        text += "."
    return f"Stopped: {text}" if len(rows) < total else text


def unique_stem(name, used):
    """name, or name_2, name_3, ... if already in ``used`` (which it joins)."""
    candidate, k = name, 1
    while candidate.lower() in used:
        k += 1
        candidate = f"{name}_{k}"
    used.add(candidate.lower())
    return candidate


# --------------------------------------------------------------------------- what each tab does

class App:
    """The page's actions as plain functions (tested without a server)."""

    def __init__(self, models, outputs=None):
        self.models = models
        self.outputs = outputs or Outputs()
        self._running = {}  # folder of a running batch -> its stop flag

    def segment(self, path, model, threshold=None, tta=False, progress=None, bridge=False, min_fragment=0, thin=0.0):
        """-> overlay, mask, probability (uint8 for display), figures, mask file, probability file.
        ``progress(fraction, desc)``: told each stage as it starts (the page shows it on long requests)."""
        progress = progress or (lambda fraction, desc: None)
        start = time.perf_counter()
        progress(0.0, "reading the photograph")
        image = read_upload(path)
        progress(0.1, f"segmenting ({image.shape[1]}x{image.shape[0]} px)")
        seg = self.models.get(model, tta, bridge, int(min_fragment or 0), float(thin or 0.0))
        trace = {}
        t0 = time.perf_counter()
        prob, mask = seg.segment(image, threshold=threshold, trace=trace)
        seconds = time.perf_counter() - t0
        progress(0.8, "writing the mask and the probability map")
        folder = self.outputs.new()
        name = stem(path)
        # the downloads are named after the photograph, as what they are
        mask_file, prob_file = folder / f"{name}_mask.png", folder / f"{name}_prob.png"
        write_png(mask_file, mask)
        write_probability(prob_file, prob)  # 16-bit, as predict.py --prob
        info = figures(image, trace["fov"], mask, seconds)
        info["threshold"] = f"{seg.threshold if threshold is None else threshold:.3f}"
        info["gaps bridged along the map"] = "yes" if bridge else "no"
        info["thin vessels kept as centrelines down to probability"] = f"{seg.thin:.3f}" if seg.thin else "no"
        info["specks removed (px at DRIVE's scale)"] = str(seg.min_fragment) if seg.min_fragment else "none"
        info["time on the server (reading, segmenting, writing the files)"] = f"{time.perf_counter() - start:.3f} s"
        return overlay(image, mask), mask.astype(np.uint8) * 255, to_u8(prob), info, str(mask_file), str(prob_file)

    def measure(self, path, mask_path):
        """-> the vessel measurements of a segmented photograph (a Markdown table with units, as
        measure.py computes them) and its centreline coloured by calibre over the photograph."""
        image = read_upload(path)
        mask = read_upload(mask_path, "mask", read_mask)
        if mask.shape != image.shape[:2]:
            raise UserError("the mask does not belong to this photograph: segment it again")
        fov = estimate_fov(image)
        row, segs, _ = measure_with_zones(mask, fov, photo=image, fov_source="estimated from the photograph")
        by_calibre, _ = overlays(segs, mask & fov, image, disc=row)
        return measurement_table(row), by_calibre

    def arteries_veins(self, path, model, tta=False):
        """-> the photograph with its arteries red and veins blue, the zone B picture (the vessels CRAE and
        CRVE are made of), a Markdown table (CRAE, CRVE, AVR; av.py), the colour map file. ``tta``: the
        maps averaged with the flipped photograph's (1.4 to 1.9 times the time, measured; better classes on the
        validation photographs, README)."""
        image = read_upload(path)
        seg = self.models.get(model, tta)
        seg.require_av(model)
        t0 = time.perf_counter()
        fov = estimate_fov(image)
        _, mask, _, classes = seg.segment_av(image, fov)
        row, disc = av_measures(image, mask, classes, fov)
        seconds = time.perf_counter() - t0
        from av import draw_zone_b, to_colour

        colour = to_colour(classes)
        shown = np.where(classes[..., None] > 0, colour, as_rgb(image)[..., :3])
        folder = self.outputs.new()
        av_file = folder / f"{stem(path)}_av.png"
        write_png(av_file, colour)
        return shown, draw_zone_b(image, classes, fov, disc), av_markdown(row, seconds), str(av_file)

    def explain(self, path, patch_model, whole_model):
        """-> (patch method stages, whole-image method stages, optic disc stages): lists of (image, caption)."""
        image = read_upload(path)
        stages = []
        seg = self.models.get(patch_model)
        t = {}
        prob, mask = seg.segment(image, trace=t)
        if t["method"] != "patch":
            raise UserError(f"{patch_model} is not a patch-method model")
        size, win = t["resized"].shape[0], t["window"]
        stages += [
            (as_rgb(image), "1. the colour photograph"),
            (t["gray"], "2. gray (ITU-R 601 luma)"),
            (t["resized"], f"3. resized to {size}x{size}"),
            (draw_windows(t["resized"], t["windows"], win),
             f"4. {len(t['windows'])} overlapping {win}x{win} windows, stride {win // 2}"),
            (mosaic([w[2] for w in t["windows"]]), "5. each window histogram-equalized (the local enhancement)"),
            (mosaic([to_u8(w[3]) for w in t["windows"]]), "6. each window segmented by the U-Net (probability)"),
            (to_u8(t["blended"]), "7. windows blended with smooth weights (no seams)"),
            (t["fov"].astype(np.uint8) * 255, "8. field of view found in the photograph"),
            (mask.astype(np.uint8) * 255, f"9. resized back, threshold {seg.threshold:.3f}, cleared outside the FOV"),
        ]
        seg = self.models.get(whole_model)
        t = {}
        prob, mask = seg.segment(image, trace=t)
        if t["method"] != "whole":
            raise UserError(f"{whole_model} is not a whole-image model")
        channel = seg.pre.get("channel", "gray")
        seen = (f"{channel} channel" if channel != "gray" else "gray") if isinstance(channel, str) else \
            " | ".join(channel) + " channels side by side (one per kind of member of the ensemble)"
        whole = [
            (channels_view(t["gray"]), f"1. {seen}"),
            (channels_view(t["enhanced"]), "2. CLAHE on the whole image" + (f" (rescaled x{t['scale']:.2f} by the FOV)"
                                                                            if t["scale"] != 1 else "")),
            (to_u8(t["blended"]), "3. U-Net probability, whole image in one pass (tiles if large)"),
            ((t["full"] >= seg.threshold).astype(np.uint8) * 255, f"4. threshold {seg.threshold:.3f}"),
            (mask.astype(np.uint8) * 255, "5. cleared outside the field of view: the result"),
        ]
        return stages, whole, self.explain_disc(image, mask, t["fov"])

    @staticmethod
    def explain_disc(image, vessels, fov):
        """How the classical locator found the optic disc: its stages as (image, caption)."""
        from disc import find_disc

        t = {}
        d = find_disc(image, vessels, fov, locator="classical", trace=t)
        if "score" not in t:
            return [(as_rgb(image), f"no disc: {d['disc_note']}")]

        def shown(a):  # a map at the working scale, NaN outside the FOV -> 8-bit
            v = a[np.isfinite(a)]
            lo, hi = (np.percentile(v, 1), np.percentile(v, 99.5)) if v.size else (0, 1)
            return np.where(np.isfinite(a), np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255, 0).astype(np.uint8)

        score = shown(t["score"])
        region = as_rgb(score // 2)
        if "region" in t:
            region[t["region"]] = (255, 220, 0)
        out = draw_zones(as_rgb(image), d, max(1, round(max(image.shape[:2]) / 400))) if d["disc_found"] else \
            as_rgb(image)
        fit = as_rgb(shown(t["fit"]))
        cx, cy = (round(d[k] * t["scale"]) for k in ("disc_x_px", "disc_y_px"))
        cv2.circle(fit, (cx, cy), round(d["disc_radius_px"] * t["scale"]), (255, 0, 255), 1)
        result = (f"6. the disc (radius {d['disc_radius_px']:.0f} px, confidence {d['disc_confidence']:.2f}) and the "
                  f"rings of zones B (2-3 radii) and C (2-5); {d['field']}, eye: {d['laterality']}"
                  if d["disc_found"] else f"6. no disc: {d['disc_note']}")
        return [
            (shown(t["brightness"]), "1. brightness against its background (working scale: 256 px per FOV diameter)"),
            (shown(t["convergence"]), "2. where the wide vessels converge (the vessel map, weighted by width)"),
            (score, "3. the two together: the brightest place where the vessels converge is the candidate"),
            (region, "4. the disc region: brighter than its surround by 0.3 of the disc's contrast (its size, "
                     "shrunk towards a typical disc's, is the radius)"),
            (fit, "5. the centre: the circle of that radius brightest against the ring around it, vessels painted "
                  "out (then a little towards the vessel trunk)"),
            (out, result),
        ]

    def check(self, path, label_path, fov_path, model, threshold=None):
        """-> metrics (dict: pixels and topology), error map, centreline map: the same code as
        evaluate.py, on one photograph."""
        from dataset import Sample
        from evaluate import ORDER, TOPOLOGY, evaluate

        image = read_upload(path)
        label = read_upload(label_path, "manual annotation (the vessel mask drawn for this photograph)", read_mask)
        if label.shape != image.shape[:2]:
            raise UserError(f"the annotation is {label.shape[1]}x{label.shape[0]} but the photograph is "
                            f"{image.shape[1]}x{image.shape[0]}: they must have the same size")
        seg = self.models.get(model)
        if fov_path:
            fov = read_upload(fov_path, "FOV mask", read_mask)
            if fov.shape != label.shape:
                raise UserError(f"the FOV mask is {fov.shape[1]}x{fov.shape[0]} but the photograph is "
                                f"{image.shape[1]}x{image.shape[0]}")
        else:
            fov = estimate_fov(image)  # as the Segmenter does
        thr = seg.threshold if threshold is None else threshold
        prob = seg.probability(image, fov, threshold=thr)
        metrics, _, _ = evaluate([Sample(stem(path), image, label, fov)], [prob], thr, seg.bridge, seg.min_fragment,
                                 seg.thin)
        rows = {k: metric_text(k, metrics[k]) for k in ORDER + TOPOLOGY}
        rows["threshold"] = f"{thr:.3f}"
        rows["FOV"] = "uploaded" if fov_path else "estimated from the photograph"
        mask = seg.mask(prob, fov, thr)
        return rows, error_map(label, mask, fov), centreline_map(label, mask, fov)

    def batch_steps(self, paths, model, threshold=None, tta=False):
        """Segment an upload photograph by photograph: yields (folder, rows so far, number of photographs)
        once before the first and again after each one. Every row yielded has its mask, probability map
        and line of results.csv on disk. stop(folder) ends it before the next photograph."""
        folder = self.outputs.new()
        files = self._expand(paths or [], folder / "in")
        if not files:
            raise UserError("no photographs: upload image files or a zip of them")
        seg = self.models.get(model, tta)
        out = folder / "masks"
        out.mkdir()
        rows, used = [], set()
        write_csv(out / "results.csv", rows, RESULT_COLUMNS)  # rewritten whole after every photograph
        self._running[folder] = stop = threading.Event()
        try:
            yield folder, rows, len(files)
            for name, path in files:
                if stop.is_set():
                    return
                rows.append(self._segment_one(seg, name, path, threshold, out, used))
                write_csv(out / "results.csv", rows, RESULT_COLUMNS)  # rewritten whole after every photograph
                yield folder, rows, len(files)
        finally:
            del self._running[folder]

    @staticmethod
    def _segment_one(seg, name, path, threshold, out, used):
        """One photograph of a batch: writes its mask and probability map, -> its results.csv row."""
        row = dict.fromkeys(RESULT_COLUMNS, "") | {"image": name}
        try:
            image = read_image(path, max_pixels=MAX_PIXELS)
            t = {}
            t0 = time.perf_counter()
            if seg.classes == "av":  # an artery/vein model: its classes too, from the same pass
                t["fov"] = estimate_fov(image)
                prob, mask, _, classes = seg.segment_av(image, t["fov"], threshold)
            else:
                prob, mask = seg.segment(image, threshold=threshold, trace=t)
            row["seconds"] = f"{time.perf_counter() - t0:.3f}"
        except UserError as exc:
            row["error"] = str(exc).replace(str(path), name)
            return row
        mask_name = unique_stem(stem(name), used)  # a.png in two folders of a zip: a, a_2
        write_png(out / f"{mask_name}.png", mask)
        write_probability(out / f"{mask_name}_prob.png", prob)
        row.update(mask=f"{mask_name}.png", width=image.shape[1], height=image.shape[0],
                   fov_diameter_px=f"{fov_diameter(t['fov']):.0f}",
                   vessel_fraction_in_fov=f"{mask[t['fov']].mean():.4f}" if t["fov"].any() else "")
        measured, _, _ = measure_with_zones(mask, t["fov"], photo=image, fov_source="estimated from the photograph",
                                            want_segments=False)
        row.update({c: "" if measured[c] is None else f"{measured[c]:.6g}" if isinstance(measured[c], float)
                    else measured[c] for c in MEASURED}, measure_note=measured["note"])
        if seg.classes == "av":  # an artery/vein model: its colour map and CRAE, CRVE, AVR too
            from av import to_colour

            av_row, _ = av_measures(image, mask, classes, t["fov"], disc=measured)  # the disc measured round
            write_png(out / f"{mask_name}_av.png", to_colour(classes))
            row.update({c: "" if av_row.get(c) is None else f"{av_row[c]:.6g}" if isinstance(av_row[c], float)
                        else av_row[c] for c in AV_RESULTS}, av_map=f"{mask_name}_av.png")
        return row

    def stop(self, folder):
        """Ask the batch writing into ``folder`` to stop before its next photograph (if it still runs)."""
        flag = self._running.get(Path(folder))
        if flag is not None:
            flag.set()

    @staticmethod
    def package(folder):
        """-> zip of what results.csv lists (masks, probability maps, the CSV), the CSV path, its rows."""
        out = Path(folder) / "masks"
        csv_path = out / "results.csv"
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        members = [m for r in rows if r["mask"] for m in (r["mask"], r["mask"][:-4] + "_prob.png")] + \
            [r["av_map"] for r in rows if r.get("av_map")]
        zip_path = Path(folder) / "vessel_masks.zip"

        def write_zip(tmp):
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for name in sorted(members) + ["results.csv"]:
                    z.write(out / name, name)

        atomic_replace(zip_path, write_zip)
        return str(zip_path), str(csv_path), rows

    def batch(self, paths, model, threshold=None, tta=False):
        """The whole batch at once -> zip of masks + 16-bit probability maps + results.csv, the CSV path, rows."""
        for folder, _, _ in self.batch_steps(paths, model, threshold, tta):
            pass
        return self.package(folder)

    @staticmethod
    def _expand(paths, into):
        """(name, path) of every photograph uploaded, zips opened (size- and count-limited)."""
        files = []
        for p in map(Path, paths):
            if zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    members = [m for m in z.infolist() if not m.is_dir() and is_image_file(m.filename)]
                    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                        raise UserError(f"{p.name}: more than {MAX_ZIP_BYTES // 2**30} GB uncompressed")
                    for k, m in enumerate(members):
                        dst = into / f"{k:05d}" / Path(m.filename).name
                        dst.parent.mkdir(parents=True)
                        with z.open(m) as src, open(dst, "wb") as f:
                            shutil.copyfileobj(src, f)
                        files.append((m.filename, dst))  # its path inside the zip
            else:
                files.append((p.name, p))
            if len(files) > MAX_BATCH_FILES:
                raise UserError(f"more than {MAX_BATCH_FILES} photographs in one batch: split it")
        return files


# --------------------------------------------------------------------------- the page

class Notes:
    """A user's mistake becomes a message in the page, and the server keeps serving.

    The reason each visitor's last action failed is kept so that the page can show it until the next
    request (a Gradio error is a toast that fades, and a failed event cannot write into the page):
    the action stores it here by the visitor's session as it fails, the failure step after it reads it."""

    def __init__(self):
        self._last = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def kept(self, request):
        import gradio as gr

        key = getattr(request, "session_hash", None)
        try:
            yield
        except (UserError, MemoryError) as exc:
            text = str(exc) if isinstance(exc, UserError) else "not enough memory for this photograph: try a smaller one"
            with self._lock:
                self._last[key] = text
            raise gr.Error(text, print_exception=False) from None

    def pop(self, request):
        with self._lock:
            return self._last.pop(getattr(request, "session_hash", None), "unknown reason")


def build(app):
    import gradio as gr

    notes = Notes()

    def failed(what):
        """The status line after a failed action: its reason, which stays until the next request."""
        def report(photograph, request: gr.Request):
            name = Path(photograph).name if photograph else ""
            reason = notes.pop(request)
            reason = reason[len(name) + 2:] if name and reason.startswith(f"{name}: ") else reason
            return f"**Could not {what} {name}:** {reason}"
        return report

    def tree_note_text(tree):
        photographs = f"on {len(tree.get('images', []))} photographs it was not trained on"
        if tree.get("thin"):
            return (f"Thin vessels kept as centrelines down to probability {tree['thin']:.3f}: the level at which the "
                    f"masks' centreline length matched the annotations' {photographs}. A longer, more branched tree "
                    "for measuring, at about the threshold's pixel accuracy (README).")
        return (f"Threshold {tree['threshold']:.3f}: the one at which the masks' centreline length matched the "
                f"annotations' {photographs}. More thin vessels for measuring the tree, lower pixel accuracy (README).")

    def marked(result, now, button, describe=lambda then: ""):
        """The status line of the result on the page (``result``: its settings and status line), with a
        mark when the settings ``now`` on the page are no longer its own (``describe``: the old ones)."""
        if result is None:
            return gr.skip()
        then, done = result
        if then == now:
            return done
        return (f"{done}\n\n**The settings have changed since this result**{describe(then)}: press **{button}** "
                f"to update it.")

    names = list(app.models.paths)
    if not names:
        raise UserError(f"no weights files (.onnx or .pth) in {HERE}: export or train a model first")
    default = names[0]
    av_names = [n for n in names if app.models.classes(n) == "av"]
    patch_names = [n for n in names if "patch" in n.lower()] or names
    whole_names = [n for n in names if "patch" not in n.lower()] or names

    with gr.Blocks(title="Retinal vessel segmentation", delete_cache=(600, KEEP_OUTPUTS_S)) as demo:
        gr.Markdown("# Retinal vessel segmentation\nUpload a colour fundus photograph (PNG, JPEG, TIFF, GIF, PPM, "
                    "also .gz), choose a model and press **Segment**. Everything runs on this computer.")
        with gr.Tab("Segment"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.File(label="Photograph", file_types=None, type="filepath", elem_id="photo")
                    more = [str(p) for _, p in MORE_EXAMPLES if p.is_file()]
                    gr.Examples(SAMPLES + more, inputs=photo, label="Examples: DRIVE test image 01" + "".join(
                        f", {n}" for n, p in MORE_EXAMPLES if p.is_file()))
                    preview = gr.Image(label="The photograph", format="jpeg", interactive=False, elem_id="preview",
                                       height=260)
                    model = gr.Dropdown(names, value=default, label="Model", elem_id="model")
                    threshold = gr.Slider(0.01, 0.99, value=app.models.threshold(default), step=0.001,
                                          label="Threshold (default: the one stored in the model)", elem_id="threshold")
                    with gr.Row():
                        tree_button = gr.Button("Measuring setting", size="sm", elem_id="tree_setting")
                        tree_note = gr.Markdown(elem_id="tree_note")
                    tta = gr.Checkbox(False, label="Test-time augmentation (flip; slower)")
                    bridge = gr.Checkbox(False, label="Bridge gaps along the map (a more connected tree for measuring; "
                                                      "about 1 s more at 8 megapixels)", elem_id="bridge")
                    specks = gr.Number(0, precision=0, minimum=0, maximum=10000, elem_id="specks",
                                       label="Remove specks: pieces of at most N px at DRIVE's scale (0: none)")
                    thin = gr.Number(0, minimum=0, maximum=0.99, step=0.01, elem_id="thin",
                                     label="Keep thin vessels as 1 px centrelines down to this probability "
                                           "(0: off; a longer tree for measuring)")
                    run = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="segment_status")
                    with gr.Row():
                        over = gr.Image(label="Vessels over the photograph", format="png", interactive=False, elem_id="overlay")
                        mask = gr.Image(label="Vessel mask", format="png", interactive=False, elem_id="mask")
                        prob = gr.Image(label="Probability", format="png", interactive=False)
                    info = gr.Markdown(elem_id="figures")
                    with gr.Row():
                        mask_file = gr.File(label="Mask (PNG, lossless)", elem_id="mask_file")
                        prob_file = gr.File(label="Probability map (16-bit PNG)", elem_id="prob_file")
                    with gr.Row():
                        m_over = gr.Image(label="Centreline coloured by calibre (px)", format="png", interactive=False,
                                          elem_id="calibre_overlay")
                        with gr.Column():
                            gr.Markdown("**Vessel measurements** inside the FOV (as `measure.py`; definitions in the "
                                        "README). Pixels: run `measure.py --fov-degrees` for micrometres.")
                            m_table = gr.Markdown(elem_id="measurements")
            shown = gr.State(None)  # the settings and status line of the result on the page

            def segment(photograph, model, threshold, tta, bridge, specks, thin, request: gr.Request,
                        progress=gr.Progress()):
                """Segment a photograph: overlay, mask, probability, figures, mask file, probability file, status."""
                with notes.kept(request):
                    *images, figures_, mask_path, prob_path = app.segment(
                        photograph, model, threshold, tta, progress=lambda f, d: progress(f, desc=d), bridge=bridge,
                        min_fragment=specks, thin=thin)
                done = f"**{Path(photograph).name}**: segmented with {model}, threshold {figures_['threshold']}."
                return (*images, as_markdown(figures_, ("figure", "value")), mask_path, prob_path, done)

            def measure(photograph, mask, request: gr.Request, progress=gr.Progress()):
                """The vessel measurements of a photograph and its mask: a Markdown table, the calibre overlay."""
                progress(0.0, desc="measuring the vessels, finding the optic disc")
                with notes.kept(request):
                    return app.measure(photograph, mask)

            def settings_changed(model, threshold, tta, bridge, specks, thin, result):
                """Mark the result on the page when the settings no longer match it."""
                return marked(result, settings_key(model, threshold, tta, bridge, specks, thin), "Segment",
                              lambda s: f" (model {s[0]}, threshold {s[1]:.3f}{', flip' if s[2] else ''}"
                                        f"{', gaps bridged' if s[3] else ''}{f', specks up to {s[4]} px removed' if s[4] else ''}"
                                        f"{f', thin vessels down to {s[5]:.3f}' if s[5] else ''})")

            def settings_key(model, threshold, tta, bridge, specks, thin):
                return model, round(threshold, 3), tta, bridge, int(specks or 0), round(float(thin or 0), 3)

            def model_threshold(model, request: gr.Request):
                with notes.kept(request):
                    return app.models.threshold(model)

            model.change(model_threshold, model, threshold, api_name=False)

            def tree_setting(model, request: gr.Request):
                """The threshold, bridging, speck removal and thin vessels of the model's tree setting, and a
                note of what they are."""
                with notes.kept(request):
                    tree = app.models.tree(model)
                if not tree:
                    return gr.skip(), gr.skip(), gr.skip(), gr.skip(), (f"{model} has no measuring setting (choose one with "
                                                  "`tree_threshold.py`).")
                return (tree["threshold"], bool(tree.get("bridge")), int(tree.get("min_fragment", 0)),
                        float(tree.get("thin", 0.0)), tree_note_text(tree))

            tree_button.click(tree_setting, model, [threshold, bridge, specks, thin, tree_note], api_name=False, queue=False)
            model.change(lambda m: "", model, tree_note, api_name=False, queue=False)

            def show_photograph(photograph):
                """The uploaded photograph, for the eye (downscaled); nothing when it cannot be read (Segment says why)."""
                if not photograph:
                    return None
                try:
                    image = read_upload(photograph)
                except UserError:
                    return None
                h, w = image.shape[:2]
                k = min(1.0, PREVIEW_SIDE / max(h, w))
                return resize(image, (max(1, round(w * k)), max(1, round(h * k)))) if k < 1 else image

            photo.change(show_photograph, photo, preview, api_name=False)
            segment_outputs = [over, mask, prob, info, mask_file, prob_file]
            # a new request first clears every result of the previous one: nothing stale stays on the page
            step = run.click(lambda p: [None] * 8 + [f"Segmenting {Path(p).name if p else ''} ..."], photo,
                             segment_outputs + [m_table, m_over, status], queue=False, api_name=False) \
                .then(lambda: None, None, shown, queue=False, api_name=False) \
                .then(segment, [photo, model, threshold, tta, bridge, specks, thin], segment_outputs + [status],
                      api_name="segment")
            step.failure(failed("segment"), photo, status, api_name=False)
            step.success(lambda m, t, a, b, n, w, done: (settings_key(m, t, a, b, n, w), done),
                         [model, threshold, tta, bridge, specks, thin, status], shown, api_name=False)
            step.success(measure, [photo, mask_file], [m_table, m_over], api_name="measure") \
                .failure(failed("measure the vessels of"), photo, status, api_name=False)
            for setting in (model, threshold, tta, bridge, specks, thin):
                setting.change(settings_changed, [model, threshold, tta, bridge, specks, thin, shown], status, api_name=False,
                               queue=False)
        with gr.Tab("Arteries and veins"):
            gr.Markdown("The photograph uploaded in *Segment* (or the sample), its vessels told apart: arteries red, "
                        "veins blue (each segment between branch points one class), and the summary calibres of "
                        "Knudtson et al. 2003 from the six widest of each crossing zone B (2 to 3 disc radii from "
                        "the disc's centre; drawn in full colour). " + ("" if av_names else
                        "**No artery/vein model beside app.py**: train one with `python train.py --av`."))
            with gr.Row():
                av_model = gr.Dropdown(av_names, value=av_names[0] if av_names else None, label="Artery/vein model")
                av_tta = gr.Checkbox(False, label="Test-time augmentation (flip: 1.4-1.9x the time, fewer mistakes)",
                                     elem_id="av_tta")
                av_go = gr.Button("Arteries and veins", variant="primary", elem_id="av_go")
            av_status = gr.Markdown(elem_id="av_status")
            with gr.Row():
                av_map = gr.Image(label="Arteries (red) and veins (blue)", format="png", interactive=False,
                                  elem_id="av_map")
                av_zone = gr.Image(label="Zone B and the vessels of CRAE and CRVE", format="png", interactive=False,
                                   elem_id="av_zone")
            with gr.Row():
                av_table = gr.Markdown(elem_id="av_table")
                av_file = gr.File(label="Artery/vein map (PNG: red, blue)", elem_id="av_file")

            def arteries_veins(photograph, model, tta, request: gr.Request):
                with notes.kept(request):
                    if not model:
                        raise UserError("no artery/vein model beside app.py: train one with python train.py --av")
                    out = app.arteries_veins(photograph or SAMPLES[0], model, tta)
                return (*out, f"**{Path(photograph or SAMPLES[0]).name}**: arteries and veins by {model}"
                              f"{' (flip averaged)' if tta else ''}.")

            def av_settings_changed(model, tta, result):
                """Mark the artery/vein result on the page when the model or the flip no longer match it."""
                return marked(result, (model, tta), "Arteries and veins")

            av_outputs = [av_map, av_zone, av_table, av_file, av_status]
            av_shown = gr.State(None)  # the settings and status line of the artery/vein result on the page
            step = av_go.click(lambda p: [None] * 4 + [f"Working on {Path(p or SAMPLES[0]).name} ...", None], photo,
                               av_outputs + [av_shown], queue=False, api_name=False) \
                .then(arteries_veins, [photo, av_model, av_tta], av_outputs, api_name="arteries_veins")
            step.failure(failed("tell the arteries from the veins of"), photo, av_status, api_name=False)
            step.success(lambda m, a, done: ((m, a), done), [av_model, av_tta, av_status], av_shown, api_name=False)
            for setting in (av_model, av_tta):
                setting.change(av_settings_changed, [av_model, av_tta, av_shown], av_status, api_name=False,
                               queue=False)
        with gr.Tab("How it works"):
            gr.Markdown("Every stage of the two methods on your photograph (the one uploaded in *Segment*, or "
                        "the sample), computed by the same code as the segmentation itself.")
            with gr.Row():
                patch_model = gr.Dropdown(patch_names, value=patch_names[0], label="Patch-method model")
                whole_model = gr.Dropdown(whole_names, value=whole_names[0], label="Whole-image model")
                show = gr.Button("Show the stages", variant="primary", elem_id="explain")
            e_status = gr.Markdown(elem_id="explain_status")
            gr.Markdown("### The patch method (local enhancement, the original)")
            # each stage whole (object_fit contain: a wide photograph's FOV is not cropped to a square), every row shown
            patch_gallery = gr.Gallery(label="The patch method, stage by stage", columns=3, height=1300,
                                       object_fit="contain", format="png", elem_id="patch_stages")
            gr.Markdown("### The whole-image method (the default)")
            whole_gallery = gr.Gallery(label="The whole-image method, stage by stage", columns=5, height=320,
                                       object_fit="contain", format="png", elem_id="whole_stages")
            gr.Markdown("### The optic disc (for the zones of the measurements)")
            disc_gallery = gr.Gallery(label="Finding the optic disc, stage by stage", columns=5, height=320,
                                      object_fit="contain", format="png", elem_id="disc_stages")
            def explain(photograph, patch_model, whole_model, request: gr.Request):
                """Every stage of both methods and of finding the disc on a photograph (default: the sample): three
                lists of (image, caption)."""
                with notes.kept(request):
                    stages = app.explain(photograph or SAMPLES[0], patch_model, whole_model)
                return (*stages, f"The stages on **{Path(photograph or SAMPLES[0]).name}**.")

            step = show.click(lambda p: (None, None, None, f"Working on {Path(p or SAMPLES[0]).name} ..."), photo,
                              [patch_gallery, whole_gallery, disc_gallery, e_status], queue=False, api_name=False) \
                .then(explain, [photo, patch_model, whole_model], [patch_gallery, whole_gallery, disc_gallery, e_status],
                      api_name="explain")
            step.failure(failed("show the stages of"), photo, e_status, api_name=False)
        with gr.Tab("Check against an annotation"):
            gr.Markdown("A photograph, its manual vessel mask and optionally its field-of-view mask: the "
                        "benchmark metrics (inside the FOV, as `evaluate.py`) and where the model disagrees.")
            with gr.Row():
                c_photo = gr.File(label="Photograph", type="filepath", elem_id="check_photo")
                c_label = gr.File(label="Manual vessel annotation", type="filepath", elem_id="check_label")
                c_fov = gr.File(label="FOV mask (optional)", type="filepath", elem_id="check_fov")
            with gr.Row():
                c_model = gr.Dropdown(names, value=default, label="Model")
                c_go = gr.Button("Compare", variant="primary", elem_id="check_go")
            c_status = gr.Markdown(elem_id="check_status")
            with gr.Row():
                c_metrics = gr.Markdown(elem_id="check_metrics")
                c_map = gr.Image(label="white: found, red: false vessel, blue: missed, dark gray: inside the FOV, "
                                       "correctly left as background; black: outside the FOV", format="png",
                                 elem_id="check_errors")
                c_topo = gr.Image(label="centreline: white: annotated and found, blue: annotated but missed, red: "
                                        "the model's outside the annotation; gray: annotated vessels",
                                  format="png", elem_id="check_centreline")

            def check(photograph, annotation, fov_mask=None, model=default, request: gr.Request = None):
                """The benchmark metrics of one photograph against its manual annotation (inside the FOV: the
                uploaded FOV mask, or the one found in the photograph), and the error map."""
                with notes.kept(request):
                    rows, errors, lines = app.check(photograph, annotation, fov_mask, model)
                return metrics_markdown(rows), errors, lines, f"**{Path(photograph).name}** against its annotation."

            step = c_go.click(lambda p: (None, None, None, f"Checking {Path(p).name if p else ''} ..."), c_photo,
                              [c_metrics, c_map, c_topo, c_status], queue=False, api_name=False) \
                .then(check, [c_photo, c_label, c_fov, c_model], [c_metrics, c_map, c_topo, c_status], api_name="check")
            step.failure(failed("check"), c_photo, c_status, api_name=False)
        with gr.Tab("Batch"):
            gr.Markdown("Several photographs, or a zip of them: a zip of masks and 16-bit probability maps with "
                        "`results.csv` (size, FOV diameter, vessel fraction, seconds, every vessel measurement; one "
                        "row per photograph). The table fills as they are done; **Stop** keeps what is done and "
                        "packages it.")
            b_files = gr.File(label="Photographs or a zip (× clears the list; the upload icon adds to it)",
                              file_count="multiple", type="filepath", elem_id="batch_files",
                              height=260)  # a long list scrolls
            with gr.Row():
                b_model = gr.Dropdown(names, value=default, label="Model")
                b_tta = gr.Checkbox(False, label="Test-time augmentation")
                b_go = gr.Button("Segment all", variant="primary", elem_id="batch_go")
                b_stop = gr.Button("Stop", variant="stop", elem_id="batch_stop")
            with gr.Row():
                b_zip = gr.File(label="Masks (zip)", elem_id="batch_zip")
                b_csv = gr.File(label="results.csv")
            b_table = gr.Dataframe(headers=BATCH_COLUMNS + SHOWN_MEASURES, label="Results (every measure: results.csv)",
                                   interactive=False, elem_id="batch_table")

            b_status = gr.Markdown(elem_id="batch_status")
            b_folder = gr.State(None)  # this visitor's running (or last) batch, for Stop

            def table(rows):
                return [[r.get(c, "") for c in BATCH_COLUMNS + SHOWN_MEASURES] for r in rows]

            def run_batch(files, model, tta, request: gr.Request):
                with notes.kept(request):
                    for folder, rows, total in app.batch_steps(files, model, None, tta):
                        if len(rows) < total:  # the table grows as the photographs are done; no earlier batch's zip
                            yield None, None, table(rows), f"{len(rows)} of {total} segmented ...", folder
                    z, c, rows = app.package(folder)
                yield z, c, table(rows), batch_summary(rows, total), folder

            step = b_go.click(lambda: (None, None, None, "Starting ..."), None, [b_zip, b_csv, b_table, b_status],
                              queue=False, api_name=False) \
                .then(run_batch, [b_files, b_model, b_tta], [b_zip, b_csv, b_table, b_status, b_folder],
                      api_name="batch")
            def batch_failed(request: gr.Request):
                return f"**Could not segment the batch:** {notes.pop(request)}"

            step.failure(batch_failed, None, b_status, api_name=False)
            # the batch stops itself before its next photograph and offers what is done (Gradio's `cancels`
            # would drop the running event and leave its outputs covered)
            b_stop.click(lambda folder: folder and app.stop(folder), b_folder, None, api_name=False)
    # requests run side by side, as many as the computer has cores (one loaded model serves them all; ONNX
    # Runtime's run is thread-safe); more wait in the queue. Memory: at most that many photographs of at most
    # MAX_PIXELS each at once.
    demo.queue(max_size=64, default_concurrency_limit=CONCURRENT)
    return demo


def patient_self_check(wait_s=60.0):
    """Gradio's ``launch`` checks once, with a 3 s timeout, that the page it has just started answers
    on localhost, and refuses to run otherwise (asking for a public share link). On a busy computer
    -- a training run beside the app -- the first answer can take longer: retry that check for up
    to ``wait_s`` seconds before giving up."""
    from gradio import networking

    check = networking.url_ok
    if getattr(check, "patient", False):
        return

    def url_ok(url):
        deadline = time.monotonic() + wait_s
        while not check(url):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    url_ok.patient = True
    networking.url_ok = url_ok


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=bounded(int, 1, 65535), default=7860, help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this computer only; 0.0.0.0: the network)")
    p.add_argument("--models", default=str(HERE), help="folder with the weights files (default: beside app.py)")
    p.add_argument("--max-upload-mb", type=bounded(int, 1, 4096), default=200,
                   help="largest file a user may upload, in MB (default: %(default)s)")
    args = p.parse_args(argv)
    if not Path(args.models).is_dir():
        raise UserError(f"--models {args.models}: folder not found")
    demo = build(App(Models(find_models(args.models))))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this computer on port {args.port} can use "
              f"the app and upload files to it", file=sys.stderr)
    patient_self_check()
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=False, quiet=True, prevent_thread_lock=True,
                    max_file_size=f"{args.max_upload_mb}mb", footer_links=[])
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({exc}); choose another --port") from None
    except ValueError as exc:  # the page did not answer on localhost within the patient check
        raise UserError(f"the app does not answer on localhost:{args.port} ({str(exc).split('.')[0]}); if a proxy "
                        "is set, add localhost,127.0.0.1 to no_proxy") from None
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"retina vessel app: open http://{host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        demo.close()


if __name__ == "__main__":
    main()
