import numpy as np
import torch

from inference import Segmenter, tiled_predict
from unet import TorchNet, UNet
from conftest import disc_image


def _model(depth=3):
    torch.manual_seed(0)
    m = UNet(1, 4, depth)
    for mod in m.modules():  # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _net(depth=3):
    return TorchNet(_model(depth))


def test_tiled_inference_equals_untiled():
    net = _net()
    model = net.model
    img = np.random.default_rng(0).integers(0, 255, (203, 317)).astype(np.uint8)
    whole = tiled_predict(net, img, window=1024)
    assert model.align == 4
    padded = np.zeros((204, 320), np.uint8)  # inference zero-pads to a multiple of 2**(depth-1)
    padded[:203, :317] = img
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(padded / 255.0).float()[None, None]))[0, 0, :203, :317].numpy()
    assert np.abs(whole - direct).max() < 1e-4
    tiled = tiled_predict(net, img, window=96, margin=32)
    assert tiled.shape == img.shape
    assert np.abs(tiled - whole).max() < 1e-4  # no seams: every kept pixel saw its full context


def test_soft_blended_windows_cover_everything_without_jumps():
    net = _net()
    img = np.full((128, 128), 120, np.uint8)
    prob = tiled_predict(net, img, window=64, stride=32, window_fn=lambda t: t, soft=True)
    assert prob.shape == (128, 128) and np.isfinite(prob).all()
    # a constant image gives a smooth map: no step at window borders (32, 64, 96)
    inner = prob[8:-8, 8:-8]
    assert np.abs(np.diff(inner, axis=1)).max() < 0.05


def test_segmenter_output_has_input_size_for_both_methods():
    img, _, fov = disc_image(123, 157, 55)
    for pre in ({"method": "whole", "enhance": "clahe", "fov_diameter": 110},
                {"method": "patch", "size": 64, "patch": 32, "enhance": "equalize"}):
        seg = Segmenter(_model(), pre, threshold=0.5)
        prob, mask = seg.segment(img, fov)
        assert prob.shape == mask.shape == (123, 157)
        assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
        assert not mask[~fov].any() and prob[~fov].max() == 0  # cleared outside the FOV
        gray_prob = seg.probability(img.mean(axis=2).astype(np.uint8))
        assert gray_prob.shape == (123, 157)


def test_rescaling_by_fov_maps_back_to_input_size():
    img, _, _ = disc_image(400, 400, 180)
    seg = Segmenter(_model(), {"method": "whole", "enhance": "none", "fov_diameter": 90}, 0.5)
    prob = seg.probability(img)
    assert prob.shape == (400, 400)


def test_segmenter_tiles_a_large_image_like_one_pass_with_the_shipped_model():
    """The Segmenter's own margin rule and the shipped depth-4 model: tiles leave no seams."""
    from conftest import REPO
    from imio import read_image
    from preprocess import resize

    img = resize(read_image(REPO / "predict" / "img.png"), (700, 620))
    one_pass = Segmenter.from_file(REPO / "UNet.pth", rescale=False)  # default tile 1024: a single window
    tiled = Segmenter.from_file(REPO / "UNet.pth", rescale=False, tile=384)  # 3 x 3 windows
    a, b = one_pass.probability(img), tiled.probability(img)
    assert a.shape == b.shape == (620, 700) and a.max() > 0.9
    assert np.abs(a - b).max() < 1e-4


def test_a_tiny_fov_does_not_blow_the_image_up(monkeypatch):
    """A small bright spot taken for the FOV would ask for a 13x upscale: capped at 4x."""
    import inference

    seen = []
    real = inference.tiled_predict
    monkeypatch.setattr(inference, "tiled_predict", lambda net, work, *a, **k: seen.append(work.shape) or real(net, work, *a, **k))
    img, _, _ = disc_image(300, 300, 20)
    seg = Segmenter(_model(), {"method": "whole", "enhance": "none", "fov_diameter": 540}, 0.5)
    assert seg.probability(img).shape == (300, 300)
    assert seen == [(1200, 1200)]
