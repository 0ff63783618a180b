import cv2
import numpy as np
import pytest
import torch

from inference import Segmenter, tiled_predict, upsample_map
from preprocess import fov_depth
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


def test_a_rescaled_map_comes_back_through_the_logit_bicubically():
    """The whole-image map at the working scale is brought back by upsample_map, nothing else."""
    img, _, fov = disc_image(400, 400, 180)
    seg = Segmenter(_model(), {"method": "whole", "enhance": "none", "fov_diameter": 90}, 0.5)
    trace = {}
    prob = seg.probability(img, fov, trace=trace)
    assert trace["scale"] < 0.5 and trace["blended"].shape != prob.shape
    back = np.clip(upsample_map(trace["blended"], (400, 400)), 0, 1)
    back[~fov] = 0
    assert np.array_equal(prob, back)


def test_upsample_map_keeps_values_and_narrows_vessel_edges():
    # a faint 1-px vessel (0.7) and a strong 2-px one (0.98) on a background of 0.01, at 1/3 scale
    small = np.full((20, 24), 0.01, np.float32)
    small[:, 6] = 0.7
    small[:, 14:16] = 0.98
    assert upsample_map(small, (24, 20)) is small  # same size: the map itself
    big = upsample_map(small, (72, 60))
    assert big.shape == (60, 72) and big.dtype == np.float32
    assert 0.0 < big.min() and big.max() < 1.0
    # the interpolation passes through the coarse values (pixel i's centre is fine pixel 3i + 1)
    assert np.allclose(big[3:57, 3 * 6 + 1], 0.7, atol=1e-3)
    assert np.allclose(big[3:57, 3 * 10 + 1], 0.01, atol=1e-4)
    # bilinear interpolation of the probability spreads a faint vessel over the scale factor (2 px
    # above the threshold for a 1-px vessel at 3x); the logit keeps its edge sharp (1 px)
    linear = cv2.resize(small, (72, 60), interpolation=cv2.INTER_LINEAR)
    assert (big[:, 12:27] >= 0.47).sum(axis=1).max() < (linear[:, 12:27] >= 0.47).sum(axis=1).min()
    # and the strong 2-px vessel comes back as wide as drawn (6 px at 3x), not wider
    assert ((big[:, 36:54] >= 0.47).sum(axis=1) == 6).all()
    # bicubic, not bilinear, in the logit: between the vessel's two pixel centres the map rises
    # above both (0.995 > 0.98), which linear interpolation cannot do
    assert big[:, 44:46].min() > 0.99


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


def test_working_scale_follows_the_fov_and_the_models_detail():
    """A photograph larger than the training scale is shrunk to it -- or, for a model trained for
    more detail, only to ``detail`` times it; a small one is enlarged to it either way."""
    from preprocess import fov_diameter

    img, _, fov = disc_image(400, 400, 180)
    d = fov_diameter(fov)

    def scale(target, detail_in_model=None, detail=None):
        pre = {"method": "whole", "enhance": "none", "fov_diameter": target}
        if detail_in_model is not None:
            pre["detail"] = detail_in_model
        trace = {}
        prob = Segmenter(_model(), pre, 0.5, detail=detail).probability(img, fov, trace=trace)
        assert prob.shape == (400, 400)
        return trace["scale"]

    assert abs(scale(90) - 90 / d) < 1e-9  # no detail stored: the training scale, as before
    assert abs(scale(90, 2.0) - 2 * 90 / d) < 1e-9  # shrunk only to twice the training scale
    assert abs(scale(90, 2.0, detail=1.0) - 90 / d) < 1e-9  # the caller's setting wins
    assert scale(d / 1.4, 1.5) == 1.0  # within `detail` of the training scale: native resolution
    assert abs(scale(2 * d, 1.5) - 2.0) < 1e-9  # a small FOV is still enlarged to the training scale
    trace = {}
    Segmenter(_model(), {"method": "whole", "fov_diameter": 2 * d}).probability(img, fov, trace=trace)
    assert trace["enhanced"].shape == (800, 800)


class _Recorder:
    """A stand-in network call: records its inputs; output depends on the column (not flip-symmetric)."""

    backend = "fake"

    def __init__(self, align=4):
        self.align, self.inputs = align, []

    def __call__(self, x):
        self.inputs.append(x.copy())
        cols = np.linspace(0, 1, x.shape[-1], dtype=np.float32)
        return (0.5 * x + 0.5 * cols).astype(np.float32)


def test_window_weights_and_window_starts():
    from inference import _starts, window_weight

    assert np.allclose(window_weight(8, 0, True), [0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25])
    eps = 1e-6
    assert np.allclose(window_weight(8, 2, False), [eps, eps, 1, 1, 1, 1, eps, eps])
    assert np.allclose(window_weight(8, 2, False, first=True), [1, 1, 1, 1, 1, 1, eps, eps])
    assert np.allclose(window_weight(8, 2, False, last=True), [eps, eps, 1, 1, 1, 1, 1, 1])
    assert _starts(100, 40, 30) == [0, 30, 60]  # the last window ends at the border
    assert _starts(100, 40, 25) == [0, 25, 50, 60]
    assert _starts(30, 40, 25) == [0]
    assert _starts(101, 40, 31) == [0, 31, 61]  # never a window past the border


def test_tiled_predict_flip_batch_window_fn_fixed_window_and_trace():
    img = np.random.default_rng(3).integers(0, 255, (50, 70)).astype(np.uint8)
    net = _Recorder()
    plain = tiled_predict(net, img, 1024)
    assert len(net.inputs) == 1 and net.inputs[0].shape == (1, 1, 52, 72)  # padded to the alignment
    x = np.zeros((52, 72), np.float32)
    x[:50, :70] = img / 255.0
    cols = np.linspace(0, 1, 72, dtype=np.float32)
    assert np.allclose(plain, (0.5 * x + 0.5 * cols)[:50, :70], atol=1e-6)
    flipped = tiled_predict(_Recorder(), img, 1024, flip=True)
    assert np.allclose(flipped, (0.5 * x + 0.25 * (cols + cols[::-1]))[:50, :70], atol=1e-6)

    inverted = _Recorder()
    tiled_predict(inverted, img, 1024, window_fn=lambda t: 255 - t)
    assert np.allclose(inverted.inputs[0][0, 0, :50, :70], 1 - img / 255.0, atol=1e-6)

    one, four = _Recorder(), _Recorder()
    windows = []
    a = tiled_predict(one, img, 32, stride=16, soft=True, trace=windows)
    b = tiled_predict(four, img, 32, stride=16, soft=True, batch=4)
    assert np.allclose(a, b) and len(one.inputs) == len(windows) == 12  # 3 x 4 windows of 32
    assert sorted({(y, x) for y, x, _, _ in windows}) == [(y, x) for y in (0, 16, 20) for x in (0, 16, 32, 40)]
    assert [i.shape[0] for i in four.inputs] == [4, 4, 4]

    two_net = _Recorder()
    two = tiled_predict(two_net, img[:40], 48, margin=8)  # exactly two windows side by side
    assert len(two_net.inputs) == 2 and two.shape == (40, 70) and np.isfinite(two).all()

    fixed = _Recorder()
    tiled_predict(fixed, img[:20, :20], 32, stride=16, soft=True, fixed_window=True)
    assert [i.shape for i in fixed.inputs] == [(1, 1, 32, 32)]  # padded up to the trained patch size


def test_patch_method_equalizes_each_window_only_when_asked():
    from preprocess import equalize

    img, _, fov = disc_image(90, 90, 40, colour=False)
    for enhance in ("equalize", "none"):
        net = _Recorder()
        trace = {}
        Segmenter(net, {"method": "patch", "size": 64, "patch": 32, "enhance": enhance}).probability(img, fov, trace)
        assert trace["resized"].shape == (64, 64) and trace["window"] == 32
        first = net.inputs[0][0, 0]
        tile = trace["resized"][:32, :32]
        want = equalize(tile) if enhance == "equalize" else tile
        assert np.allclose(first, want / 255.0, atol=1e-6)


def _expected(gray, fov, flip=False):
    """What the Segmenter must return with a _Recorder network in one window, no rescaling."""
    h, w = gray.shape
    pw = -(-w // 4) * 4
    cols = np.linspace(0, 1, pw, dtype=np.float32)
    if flip:
        cols = 0.5 * (cols + cols[::-1])
    want = (0.5 * gray / np.float32(255.0) + 0.5 * cols[:w]).astype(np.float32)
    want[~fov] = 0
    return want


def test_whole_method_values_threshold_and_trace_with_a_known_network():
    img, _, fov = disc_image(61, 75, 28, colour=False)
    pre = {"method": "whole", "fov_diameter": 20}  # no "enhance" key: none; the FOV is ~56 px wide
    for flip in (False, True):
        seg = Segmenter(_Recorder(), pre, threshold=0.4, rescale=False, flip=flip)
        trace = {}
        prob, mask = seg.segment(img, fov, trace=trace)
        assert np.allclose(prob, _expected(img, fov, flip), atol=1e-6)
        assert np.array_equal(mask, prob >= 0.4) and mask.any()
        assert trace["scale"] == 1.0 and trace["enhanced"].shape == (61, 75)  # --no-rescale: native size
        for key in ("gray", "resized", "enhanced", "blended", "fov", "windows"):
            assert trace[key] is not None and len(trace[key]) > 0, key
        assert trace["method"] == "whole" and trace["window"] == 1024 and len(trace["windows"]) == 1
    at = float(prob[fov].max())
    assert seg.segment(img, fov, threshold=at)[1][prob == at].all()  # a pixel at the threshold is a vessel
    assert seg.segment(img, fov, threshold=0.99)[1].sum() < mask.sum()  # the caller's threshold is used


def test_patch_method_is_soft_blended_half_overlapping_windows():
    from preprocess import equalize, resize

    img, _, fov = disc_image(90, 90, 40, colour=False)
    pre = {"method": "patch", "size": 64, "patch": 32, "enhance": "equalize"}
    for flip in (False, True):
        trace = {}
        prob = Segmenter(_Recorder(), pre, flip=flip).probability(img, fov, trace)
        work = resize(img, (64, 64))
        want = resize(tiled_predict(_Recorder(), work, 32, stride=16, window_fn=equalize, soft=True, fixed_window=True,
                                    flip=flip), (90, 90))
        want[~fov] = 0
        assert np.allclose(prob, want, atol=1e-6)
        assert len(trace["windows"]) == 9 and trace["method"] == "patch"


def test_the_work_image_never_exceeds_4096_px_a_side(monkeypatch):
    img = np.zeros((2000, 1500), np.uint8)
    img[990:1010, 740:760] = 200  # a tiny FOV asks for a large upscale
    trace = {}
    Segmenter(_Recorder(), {"method": "whole", "fov_diameter": 540}).probability(img, trace=trace)
    assert max(trace["enhanced"].shape) == 4096


def test_models_load_by_their_suffix_with_their_threshold_and_hints():
    from cli import UserError
    from conftest import REPO

    onnx = Segmenter.from_file(REPO / "UNet.onnx")
    torch_seg = Segmenter.from_file(REPO / "UNet.pth")
    assert onnx.net.backend == "onnxruntime" and torch_seg.net.backend == "torch"
    import torch

    stored = torch.load(REPO / "UNet.pth", weights_only=True)["threshold"]  # chosen on validation, not 0.5
    assert abs(stored - 0.5) > 0.01
    assert abs(onnx.threshold - stored) < 1e-4 and abs(torch_seg.threshold - stored) < 1e-4
    assert onnx.pre == torch_seg.pre and onnx.pre["fov_diameter"] == 540
    for name in ("gone.onnx", "gone.pth"):
        with pytest.raises(UserError, match=f"{name} not found; train one"):
            Segmenter.from_file(REPO / name, hint="; train one")


def test_contrast_enhancement_named_in_the_model_is_applied():
    from preprocess import clahe

    img, _, fov = disc_image(61, 75, 28, colour=False)
    net = _Recorder()
    Segmenter(net, {"method": "whole", "enhance": "clahe", "fov_diameter": 20}, rescale=False).probability(img, fov)
    assert np.allclose(net.inputs[0][0, 0, :61, :75], clahe(img) / 255.0, atol=1e-6)


def test_the_channel_named_in_the_model_is_what_the_network_sees():
    from preprocess import to_gray

    img, _, fov = disc_image(61, 75, 28)
    img[..., 1] = 255 - img[..., 1]  # a green channel unlike the gray level
    for pre, want in (({}, to_gray(img)), ({"channel": "green"}, img[..., 1]), ({"channel": "gray"}, to_gray(img))):
        net = _Recorder()
        Segmenter(net, {"method": "whole", "fov_diameter": 20, **pre}, rescale=False).probability(img, fov)
        assert np.allclose(net.inputs[0][0, 0, :61, :75], want / 255.0, atol=1e-6), pre


def test_a_list_of_channels_gives_the_network_one_input_channel_each():
    """preprocess "channel": ["gray", "green"] (an ensemble of gray and green members): the network
    gets N x 2 x H x W, gray then green, each enhanced, tiled like one channel (not transposed)."""
    from preprocess import clahe, to_gray

    img, _, fov = disc_image(61, 75, 28)
    img[..., 1] = 255 - img[..., 1]
    net = _Recorder()
    pre = {"method": "whole", "fov_diameter": 20, "enhance": "clahe", "channel": ["gray", "green"]}
    Segmenter(net, pre, rescale=False).probability(img, fov)
    x = net.inputs[0]
    assert x.shape[:2] == (1, 2)
    assert np.allclose(x[0, 0, :61, :75], clahe(to_gray(img)) / 255.0, atol=1e-6)
    assert np.allclose(x[0, 1, :61, :75], clahe(img[..., 1]) / 255.0, atol=1e-6)
    two = np.dstack([to_gray(img), img[..., 1]])  # several windows: each tile keeps both channels in place

    class Second(_Recorder):
        def __call__(self, x):
            return np.ascontiguousarray(x[:, 1:2])

    assert np.allclose(tiled_predict(Second(), two, 32, margin=4), img[..., 1] / 255.0, atol=1e-6)


def test_no_trace_asked_no_tiles_kept(monkeypatch):
    import inference

    seen = []
    real = inference.tiled_predict
    monkeypatch.setattr(inference, "tiled_predict", lambda *a, **k: seen.append(k.get("trace")) or real(*a, **k))
    img, _, fov = disc_image(61, 75, 28, colour=False)
    for pre in ({"method": "whole", "fov_diameter": 56}, {"method": "patch", "size": 64, "patch": 32}):
        Segmenter(_Recorder(), pre).probability(img, fov)
    assert seen == [None, None]  # a large photograph must not hold every tile in memory


def test_user_facing_errors_of_the_segmenter_and_loaders():
    from cli import UserError
    from conftest import REPO

    img, _, fov = disc_image(16, 22, 6, colour=False)
    with pytest.raises(UserError, match="^the FOV mask is 10x5 but the image is 22x16: they must have the same size$"):
        Segmenter(_Recorder(), {"method": "whole"}).probability(img, np.ones((5, 10), bool))
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        Segmenter(_Recorder(), {"method": "magic"}).probability(img, fov)
    seg = Segmenter.from_file(REPO / "UNet.onnx", flip=True, tile=256, rescale=False, detail=2)
    assert (seg.flip, seg.tile, seg.rescale, seg.detail) == (True, 256, False, 2.0)  # --tta etc. reach it
    import torch

    if not torch.cuda.is_available():
        for name in ("UNet.pth", "UNet.onnx"):
            with pytest.raises(UserError, match="cuda"):
                Segmenter.from_file(REPO / name, device="cuda")


def test_edge_line_clears_pieces_running_along_the_fov_edge_and_keeps_vessels_crossing_it():
    """The weights' preprocess "edge_line" (Session 28): in the FOV's outer ring a piece of the mask longer along
    the edge than length x the diameter is cleared (the A/V model's line on STARE's rim); a vessel crossing the
    edge, and everything deeper inside, is kept."""
    h = w = 201
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - 100) ** 2 + (xx - 100) ** 2 <= 95 ** 2  # diameter 191: ring depth 0.02 x 191 = 3.8 px
    depth = fov_depth(fov)
    out = np.zeros((2, h, w), np.float32)
    line = fov & (depth <= 2) & (yy > 150)             # along the lower edge: ~90 px long
    vessel = fov & (np.abs(xx - 100) <= 3) & (yy < 60)  # crossing the upper edge, 7 px wide
    out[:, line | vessel] = 0.9
    out[:, fov & (depth > 10) & (np.abs(yy - 100) <= 2)] = 0.8  # deep inside, along a row
    kept = out.copy()
    seg = Segmenter(_model(), {"method": "whole", "edge_line": {"depth": 0.02, "length": 0.1}}, threshold=0.5)
    seg.clear_edge_lines(out, fov)
    assert (out[:, line] == 0).all()
    assert np.array_equal(out[:, vessel], kept[:, vessel])
    assert np.array_equal(out[:, depth > 4], kept[:, depth > 4])


def test_edge_line_is_found_at_the_threshold_the_caller_cuts_at():
    """A line along the edge at probability 0.4 is no piece at the model's threshold 0.5, but it is one of the
    mask ``segment(..., threshold=0.3)`` (the web page's threshold) makes: found there, it is cleared, and
    nothing of it is left in that mask."""
    h = w = 201
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - 100) ** 2 + (xx - 100) ** 2 <= 95 ** 2
    depth = fov_depth(fov)
    line = fov & (depth <= 2) & (yy > 150)
    fixed = np.zeros((h, w), np.float32)
    fixed[line] = 0.4
    seg = Segmenter(_model(), {"method": "whole", "edge_line": {"depth": 0.02, "length": 0.1}}, threshold=0.5)
    seg.network_maps = lambda work, trace=None: fixed[None].copy()
    image = np.full((h, w), 120, np.uint8)
    assert (seg.probability(image, fov)[line] == np.float32(0.4)).all()  # at 0.5 there is no piece to clear
    prob, mask = seg.segment(image, fov, threshold=0.3)
    assert not mask[line].any() and (prob[line] == 0).all()
    assert seg.threshold == 0.5  # the model's own is left as it was
