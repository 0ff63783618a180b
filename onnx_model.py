"""The U-Net as ONNX: export from a PyTorch checkpoint, and inference through ONNX Runtime without torch.

An exported ``NAME.onnx`` computes vessel probabilities (sigmoid included) from a float32
N x 1 x H x W input in [0, 1], with N, H and W free (H and W multiples of 2**(depth-1); the
tiler pads to that). Everything inference needs travels in the model's metadata, as in a ``.pth``:
``format``, ``arch``, ``preprocess``, ``threshold``, ``info`` (JSON), where chosen the ``tree`` setting
(JSON; tree_threshold.py) and ``source_sha256``, the hash of the checkpoint it was exported from (so a
stale export can be noticed).

Exporting needs torch and onnx (the full install); running needs only onnxruntime and numpy.
"""
import hashlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np

from cli import UserError, warn

ONNX_FORMAT = "retina-vessel-unet-onnx/1"
OPSET = 17


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export(weights, out=None):
    """Export the checkpoint ``weights`` (a .pth) to ``out`` (default: same name, .onnx), atomically."""
    import warnings

    import onnx
    import torch

    from imio import atomic_replace
    from unet import load_model

    weights = Path(weights)
    out = Path(out) if out else weights.with_suffix(".onnx")
    model, ckpt = load_model(weights)  # BatchNorm folded: fewer nodes

    class WithSigmoid(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.sigmoid(self.net(x))

    side = 4 * model.align  # an aligned example size: the graph then needs no internal padding
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter gives a graph that runs at every aligned size
        # (the torch.export one failed at run time on some sizes, see the README)
        channels = getattr(model, "in_channels", None) or model.arch.get("in_channels", 1)  # an ensemble: 1 per kind
        torch.onnx.export(WithSigmoid(model).eval(), torch.zeros(1, channels, side, side), buf, dynamo=False,
                          input_names=["image"], output_names=["prob"], opset_version=OPSET,
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "prob": {0: "batch", 2: "height", 3: "width"}})
    proto = onnx.load_from_string(buf.getvalue())
    meta = {
        "format": ONNX_FORMAT,
        "arch": json.dumps(ckpt["arch"]),
        "preprocess": json.dumps(ckpt["preprocess"]),
        "threshold": repr(float(ckpt["threshold"])),
        "info": json.dumps(ckpt.get("info", {})),
        **({"tree": json.dumps(ckpt["tree"])} if ckpt.get("tree") else {}),
        "source": weights.name,
        "source_sha256": file_sha256(weights),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.doc_string = "Retinal vessel U-Net: probabilities from a gray image in [0, 1] (see the metadata)"
    onnx.checker.check_model(proto)
    atomic_replace(out, lambda tmp: onnx.save(proto, tmp), suffix=".onnx")
    return out


def _quantization():
    """onnxruntime.quantization's names. It imports onnxruntime.transformers, whose modules import their
    own top-level ``onnx_model`` (from their folder, appended to sys.path): this file's name, which
    comes first on the path. Imported with theirs in place, then ours put back."""
    import importlib.util
    import sys

    if "onnxruntime.quantization" not in sys.modules:
        theirs = Path(importlib.util.find_spec("onnxruntime").origin).parent / "transformers"
        ours = sys.modules.pop("onnx_model", None)
        sys.path.insert(0, str(theirs))
        try:
            importlib.import_module("onnxruntime.quantization")
        finally:
            sys.path.remove(str(theirs))
            if ours is not None:
                sys.modules["onnx_model"] = ours
    q = sys.modules["onnxruntime.quantization"]
    return q.CalibrationDataReader, q.QuantFormat, q.QuantType, q.quantize_static


def quantize(model, photographs, out=None):
    """An int8 copy of the exported ``model`` (a .onnx; written to ``out``, default NAME_int8.onnx,
    atomically), for CPUs with fast 8-bit arithmetic (x86 with AVX-512 VNNI or AVX-VNNI, recent Arm).

    ONNX Runtime's static quantization (``quantize_static``, QDQ format): weights int8 per output
    channel with 7-bit range (``reduce_range``: x86 CPUs without VNNI can otherwise saturate their
    8-bit sums and give other results than CPUs with it), activations uint8 with ranges (min/max)
    calibrated on the network inputs the Segmenter makes of ``photographs`` (paths of colour
    photographs; their FOV estimated as predict.py does), so the calibration sees what inference
    feeds the network. The last convolution (the logits) and the sigmoid stay float: the probability
    maps keep their 16-bit resolution. The metadata is the float model's, with ``int8`` (JSON: the
    calibration photographs' names) added; it runs with onnxruntime alone, like the float model.
    """
    import onnx

    from imio import atomic_replace, read_image
    from inference import Segmenter

    CalibrationDataReader, QuantFormat, QuantType, quantize_static = _quantization()

    model = Path(model)
    out = Path(out) if out else model.with_name(f"{model.stem}_int8.onnx")
    net, meta = load_onnx(model)
    if meta["int8"] is not None:
        raise UserError(f"{model} is already an 8-bit copy; make the copy from the float model "
                        f"(python export_onnx.py WEIGHTS.pth --int8 PHOTOS)")
    feeds = []

    class Recording:  # the session, recording every input the Segmenter gives it (padded as run)
        def __init__(self, session):
            self.session = session

        def run(self, names, feed):
            feeds.append(dict(feed))
            return self.session.run(names, feed)

    net.session = Recording(net.session)
    segmenter = Segmenter(net, meta["preprocess"], meta["threshold"])
    names = []
    for path in photographs:
        segmenter.maps(read_image(path))
        names.append(Path(path).name)
    if not feeds:
        raise UserError("--int8 needs at least one photograph to calibrate on")

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    source = onnx.load(model)
    graph = source.graph
    made_by = {o: n for n in graph.node for o in n.output}
    sigmoids = [n for n in graph.node if n.op_type == "Sigmoid"]
    keep_float = [n.name for n in sigmoids] + [made_by[n.input[0]].name for n in sigmoids if n.input[0] in made_by]
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(model), str(quantized), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=keep_float)  # min/max calibration: only each tensor's range is kept
        proto = onnx.load(quantized)
    props = {p.key: p.value for p in source.metadata_props}
    props["int8"] = json.dumps({"calibration": names})
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    atomic_replace(out, lambda tmp: onnx.save(proto, tmp), suffix=".onnx")
    return out


class OnnxNet:
    """The network call of inference through ONNX Runtime (same contract as ``unet.TorchNet``)."""

    backend = "onnxruntime"

    def __init__(self, session, align):
        self.session = session
        self.align = int(align)
        self.input = session.get_inputs()[0].name

    def __call__(self, x):
        h, w = x.shape[-2:]
        ph, pw = -h % self.align, -w % self.align
        if ph or pw:  # the graph is exported for aligned sizes: pad, then crop
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0][..., :h, :w]


def session_options():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: no warnings on the terminal of a user
    return so


def providers(device, available):
    """ONNX Runtime execution providers for ``--device`` (auto: CUDA when this onnxruntime has it)."""
    device = (device or "cpu").lower()
    if device in ("cpu", "auto"):
        return (["CUDAExecutionProvider"] if device == "auto" and "CUDAExecutionProvider" in available else []) + \
            ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise UserError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu), "
                            "or use the .pth weights with PyTorch")
        index = device.split(":", 1)[1] if ":" in device else "0"
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise UserError(f"--device {device}: ONNX models run on cpu or cuda here; use the .pth weights for {device}")


def load_onnx(path, hint="", device="cpu"):
    """Return (OnnxNet, metadata dict with arch, preprocess, threshold, info) from an exported model."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found{hint}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"{path}: onnxruntime is not installed (pip install onnxruntime), or use the .pth weights") from None
    try:
        chosen = providers(device, ort.get_available_providers())
        session = ort.InferenceSession(path.read_bytes(), session_options(), providers=chosen)
    except UserError:
        raise
    except Exception as exc:  # onnxruntime raises its own kinds for damaged or invalid files
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it with: "
                        f"python export_onnx.py") from None
    props = session.get_modelmeta().custom_metadata_map
    if props.get("format") != ONNX_FORMAT:
        raise UserError(f"{path}: an ONNX model, but not one of this toolkit (expected metadata format {ONNX_FORMAT})")
    inputs = session.get_inputs()
    try:
        meta = {"arch": json.loads(props["arch"]), "preprocess": json.loads(props["preprocess"]),
                "threshold": float(props["threshold"]), "info": json.loads(props.get("info", "{}")),
                "tree": json.loads(props["tree"]) if "tree" in props else None,
                "source": props.get("source"), "source_sha256": props.get("source_sha256"),
                "int8": json.loads(props["int8"]) if "int8" in props else None}  # an 8-bit copy: its calibration
        align = 2 ** (int(meta["arch"]["depth"]) - 1)
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not isinstance(meta["preprocess"]["method"], str):
            raise ValueError("unexpected graph inputs")
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: damaged metadata in this toolkit's ONNX model ({exc}); re-export it") from None
    _warn_if_stale(path, meta)
    return OnnxNet(session, align), meta


def _warn_if_stale(path, meta):
    """Warn when the checkpoint beside the model is not the one it was exported from."""
    src = path.with_name(meta["source"]) if meta.get("source") else None
    if src is not None and src.is_file() and meta.get("source_sha256") and file_sha256(src) != meta["source_sha256"]:
        warn(f"{path} was exported from another {src.name} than the one beside it: "
             f"re-export with: python export_onnx.py {src}")
