"""Inference through ONNX Runtime: same probabilities as PyTorch, no torch import, clear errors."""
import csv
import subprocess
import sys

import numpy as np
import pytest

import av
from cli import UserError
from conftest import REPO
from imio import read_image
from inference import Segmenter
from preprocess import resize

SHIPPED = ["UNet.pth", "UNet_fast.pth", "UNet_STARE.pth", "UNet_patch_equalized_patch_256_50.pth", "UNet_AV.pth"]
SHIPPED_INT8 = ["UNet_AV.pth"]  # its .onnx is the 8-bit copy (README: the width-12 model inside 0.15 s)


def pair(weights, **kw):
    """The same model through PyTorch (.pth) and through ONNX Runtime (.onnx)."""
    pth = Segmenter.from_file(REPO / weights, **kw)
    onnx = Segmenter.from_file(REPO / weights.replace(".pth", ".onnx"), **kw)
    assert pth.net.backend == "torch" and onnx.net.backend == "onnxruntime"
    return pth, onnx


@pytest.mark.parametrize("weights", SHIPPED)
def test_each_shipped_onnx_is_its_shipped_pth(weights):
    """Metadata, source hash and probabilities on the sample image agree: the two cannot drift apart."""
    import torch

    from onnx_model import file_sha256, load_onnx

    ckpt = torch.load(REPO / weights, weights_only=True)
    _, meta = load_onnx(REPO / weights.replace(".pth", ".onnx"))
    assert meta["source_sha256"] == file_sha256(REPO / weights), "re-run: python export_onnx.py " + weights
    assert meta["preprocess"] == ckpt["preprocess"] and meta["arch"] == ckpt["arch"]
    assert meta["threshold"] == ckpt["threshold"] and meta["info"] == ckpt["info"]
    pth, onnx = pair(weights)
    img = read_image(REPO / "predict" / "img.png")
    a, b = pth.maps(img), onnx.maps(img)  # every output (the artery/vein model has two)
    int8 = meta["int8"] is not None
    assert int8 == (weights in SHIPPED_INT8)
    if not int8:
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4
    else:  # the 8-bit copy follows the float maps, the vessel mask and the classes, not to the last bit
        vessels = a[0] > pth.threshold
        assert a.shape == b.shape and np.abs(a - b).mean() < 0.01
        assert np.mean(vessels == (b[0] > pth.threshold)) > 0.995
        assert np.mean((a[1] > 0.5) == (b[1] > 0.5), where=vessels) > 0.97


@pytest.mark.parametrize("w,h", [(565, 584), (301, 257), (97, 131)])
@pytest.mark.parametrize("weights", ["UNet.pth", "UNet_patch_equalized_patch_256_50.pth"])
def test_onnx_equals_torch_on_odd_sizes_for_both_methods(weights, w, h):
    img = resize(read_image(REPO / "predict" / "img.png"), (w, h))
    pth, onnx = pair(weights)
    a, b = pth.probability(img), onnx.probability(img)
    assert a.shape == b.shape == (h, w) and a.max() > 0.5
    assert np.abs(a - b).max() <= 1e-4
    assert np.mean(pth.segment(img)[1] != onnx.segment(img)[1]) < 1e-4  # only pixels within 1e-4 of the threshold


def test_onnx_equals_torch_on_a_large_photograph_through_tiles():
    """3504x2336 without rescaling: several 1024x1024 tiles, the Segmenter's own margin."""
    img = resize(read_image(REPO / "predict" / "img.png"), (3504, 2336))
    pth, onnx = pair("UNet.pth", rescale=False, flip=True)
    a, b = pth.probability(img), onnx.probability(img)
    assert a.shape == (2336, 3504) and np.abs(a - b).max() <= 1e-4


def test_onnx_net_pads_unaligned_inputs():
    from onnx_model import load_onnx

    net, meta = load_onnx(REPO / "UNet.onnx")
    channel = meta["preprocess"].get("channel", "gray")
    channels = 1 if isinstance(channel, str) else len(channel)  # the shipped pair: gray and green
    x = np.random.default_rng(0).random((2, channels, 37, 51), dtype=np.float32)
    y = net(x)
    assert y.shape == (2, 1, 37, 51) and 0 <= y.min() and y.max() <= 1


def test_predict_with_onnx_never_imports_torch(tmp_path):
    code = ("import sys; sys.argv = ['predict.py']; sys.path.insert(0, {repo!r}); import predict\n"
            "try:\n    predict.main([])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules, [m for m in sys.modules if m.startswith(('torch', 'sklearn'))][:3])")
    (tmp_path / "predict").mkdir()
    (tmp_path / "predict" / "img.png").write_bytes((REPO / "predict" / "img.png").read_bytes())
    (tmp_path / "UNet.onnx").write_bytes((REPO / "UNet.onnx").read_bytes())
    r = subprocess.run([sys.executable, "-c", code.format(repo=str(REPO))], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False []"
    # and the mask is the one PyTorch gives
    res = read_image(tmp_path / "result" / "res.png") > 0
    ref = Segmenter.from_file(REPO / "UNet.pth").segment(read_image(REPO / "predict" / "img.png"))[1]
    assert np.mean(res != ref) < 1e-5


def test_damaged_or_foreign_onnx_is_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from onnx_model import load_onnx

    good = (REPO / "UNet.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="not a readable ONNX model"):
        load_onnx(tmp_path / "cut.onnx")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(UserError, match="not one of this toolkit"):
        load_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(UserError, match="not found"):
        load_onnx(tmp_path / "absent.onnx")
    r = subprocess.run([sys.executable, REPO / "predict.py", "--weights", "cut.onnx", "--input", REPO / "predict" / "img.png"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cut.onnx" in r.stderr


def test_export_warns_when_the_pth_beside_it_changed(tmp_path, capsys):
    from onnx_model import export, load_onnx
    from unet import UNet, checkpoint_dict, save_checkpoint

    save_checkpoint(tmp_path / "m.pth", checkpoint_dict(UNet(1, 4, 3), {"method": "whole", "enhance": "none"}, 0.4))
    assert export(tmp_path / "m.pth") == tmp_path / "m.onnx"
    net, meta = load_onnx(tmp_path / "m.onnx")
    assert meta["threshold"] == pytest.approx(0.4) and net.align == 4
    assert "exported from another" not in capsys.readouterr().err
    save_checkpoint(tmp_path / "m.pth", checkpoint_dict(UNet(1, 4, 3), {"method": "whole", "enhance": "none"}, 0.3))
    load_onnx(tmp_path / "m.onnx")
    assert "exported from another m.pth" in capsys.readouterr().err


def test_int8_copy_is_quantized_keeps_the_float_maps_and_the_metadata(tmp_path, capsys):
    """export_onnx.py --int8: an 8-bit graph, calibrated on the photographs given, whose maps follow the
    float model's, whose probabilities keep more than 256 levels (logits and sigmoid stay float), with
    the float model's metadata and the calibration photographs named; our onnx_model stays importable."""
    import sys as _sys

    import onnx
    import onnx.numpy_helper

    import export_onnx
    from onnx_model import load_onnx

    export_onnx.main([str(REPO / "UNet_AV.pth"), "--out", str(tmp_path / "av.onnx")])  # the float model
    export_onnx.main([str(tmp_path / "av.onnx"), "--int8", str(REPO / "predict" / "img.png")])
    graph = onnx.load(tmp_path / "av_int8.onnx").graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) > 10 and max(np.abs(w.astype(int)).max() for w in weights) <= 64  # 7-bit range: no saturation
    assert hasattr(_sys.modules["onnx_model"], "quantize")  # not onnxruntime's module of the same name
    (_, float_meta), (_, meta) = load_onnx(tmp_path / "av.onnx"), load_onnx(tmp_path / "av_int8.onnx")
    assert meta.pop("int8") == {"calibration": ["img.png"]} and float_meta.pop("int8") is None
    assert meta == float_meta  # arch, preprocess, threshold, info, source and its hash
    img = read_image(REPO / "predict" / "img.png")
    a, b = Segmenter.from_file(tmp_path / "av.onnx"), Segmenter.from_file(tmp_path / "av_int8.onnx")
    fa, fb = a.maps(img), b.maps(img)
    vessels = fa[0] > a.threshold
    assert np.abs(fa - fb).mean() < 0.01 and np.mean(vessels == (fb[0] > a.threshold)) > 0.995
    assert np.mean((fa[1] > 0.5) == (fb[1] > 0.5), where=vessels) > 0.95
    assert len(np.unique(fb[0][(fb[0] > 0.05) & (fb[0] < 0.95)])) > 1000
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # a copy of the copy would quantize twice
        export_onnx.main([str(tmp_path / "av_int8.onnx"), "--int8", str(REPO / "predict" / "img.png"),
                          "--out", str(tmp_path / "again.onnx")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "already an 8-bit copy" in err and err.count("\n") == 1
    assert not (tmp_path / "again.onnx").exists()


def test_int8_refuses_what_it_cannot_calibrate_on_in_one_line(tmp_path, capsys):
    import export_onnx

    for argv, message in [(["--int8", str(tmp_path / "absent.png")], "absent.png is neither an image file nor a folder"),
                          ([], "expected a .pth checkpoint\n")]:
        with pytest.raises(SystemExit) as exit_:
            export_onnx.main([str(REPO / "UNet_AV.onnx"), *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir()) and not (REPO / "UNet_AV_int8.onnx").exists()


def test_light_install_segments_without_torch(tmp_path):
    """A venv from requirements-light.txt alone runs predict.py on the shipped ONNX model."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = subprocess.run([venv / "bin" / "pip", "install", "-q", "-r", REPO / "requirements-light.txt"],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "work"
    (work / "predict").mkdir(parents=True)
    (work / "predict" / "img.png").write_bytes((REPO / "predict" / "img.png").read_bytes())
    r = subprocess.run([venv / "bin" / "python", REPO / "predict.py", "--weights", REPO / "UNet.onnx", "--prob"],
                       cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0  # really without torch
    res = read_image(work / "result" / "res.png") > 0
    ref = Segmenter.from_file(REPO / "UNet.pth").segment(read_image(REPO / "predict" / "img.png"))[1]
    assert np.mean(res != ref) < 1e-5
    from imio import read_probability

    prob = read_probability(work / "result" / "res_prob.png")
    assert prob.shape == res.shape and prob.max() > 0.99
    # arteries and veins, measured, in the light install too (UNet_AV.onnx; zone B round the disc)
    r = subprocess.run([venv / "bin" / "python", REPO / "predict.py", "--av", "--weights", REPO / "UNet_AV.onnx",
                        "--measure", "--output", "av"],
                       cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    classes = av.read_classes(read_image(work / "av" / "res_av.png"))
    want = Segmenter.from_file(REPO / "UNet_AV.onnx").segment_av(read_image(REPO / "predict" / "img.png"))[3]
    assert np.mean(classes != want) < 1e-4  # the full install's classes from the same file
    with open(work / "av" / "measurements.csv") as f:
        assert float(next(csv.DictReader(f))["avr"]) > 0
