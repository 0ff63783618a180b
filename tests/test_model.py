import subprocess
import sys

import pytest
import torch

from cli import UserError
from conftest import REPO
from losses import CEDiceLoss, soft_dice_loss
from unet import UNet, WNet, checkpoint_dict, count_parameters, load_grown, load_model, save_checkpoint


@pytest.mark.parametrize("h,w", [(64, 64), (65, 77), (101, 33), (584, 565)])
def test_output_has_input_size_for_odd_sizes(h, w):
    model = UNet(1, 4, 3).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, h, w)).shape == (1, 1, h, w)


def test_original_architecture_size():
    assert 30e6 < count_parameters(UNet(1, 64, 5)) < 32e6  # the original 31 M-parameter U-Net
    assert count_parameters(UNet(1, 8, 3)) < 30_000


def test_dice_has_a_gradient_and_is_zero_for_perfect_prediction():
    target = (torch.rand(2, 1, 16, 16) > 0.7).float()
    logits = torch.zeros(2, 1, 16, 16, requires_grad=True)
    loss = CEDiceLoss(bce_weight=0.0)(logits, target)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    perfect = (target * 40 - 20)
    assert soft_dice_loss(perfect, target).item() < 1e-3
    assert soft_dice_loss(-perfect, target).item() > 0.9


@pytest.mark.parametrize("out_channels", [1, 2])
def test_a_grown_network_computes_what_the_narrow_one_did_and_learns_with_its_added_channels(out_channels):
    """unet.load_grown: width 4 -> 6 (an odd growth: the added channels are not a multiple), depth 3.
    Same output in eval and train mode (batch statistics of the old channels untouched), the
    weights by which old channels read added ones are zero yet get gradients, and the added
    channels are alive (their own weights get gradients too)."""
    torch.manual_seed(0)
    narrow = UNet(in_channels=3, width=4, depth=3, out_channels=out_channels)
    with torch.no_grad():  # trained-looking BatchNorm statistics, so that eval mode is tested too
        for m in narrow.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 1.5)
    wide = UNet(in_channels=3, width=6, depth=3, out_channels=out_channels)
    load_grown(wide, narrow.state_dict())
    x = torch.randn(2, 3, 40, 44)
    for mode in ("eval", "train"):
        narrow.train(mode == "train"), wide.train(mode == "train")
        with torch.no_grad():
            assert torch.allclose(narrow(x), wide(x), atol=1e-5), mode
    readers = wide.ups[-1].conv[0].weight  # reads [skip (6), upsampled (6)]: old ones at 0:4 and 6:10
    assert torch.equal(readers[:4, 4:6], torch.zeros_like(readers[:4, 4:6]))
    assert torch.equal(readers[:4, 10:], torch.zeros_like(readers[:4, 10:]))
    assert torch.equal(readers[:4, 6:10], narrow.ups[-1].conv[0].weight[:, 4:8])
    wide.train()
    wide(x).square().mean().backward()
    assert readers.grad[:4, 4:6].abs().sum() > 0 and readers.grad[:4, 10:].abs().sum() > 0
    assert wide.outc.weight.grad[:, 4:].abs().sum() > 0
    assert wide.inc[0].weight.grad[4:].abs().sum() == 0  # nothing reads them yet: no gradient on the first step
    torch.optim.SGD(wide.parameters(), lr=0.1).step()
    wide.zero_grad()
    wide(x).square().mean().backward()
    assert wide.inc[0].weight.grad[4:].abs().sum() > 0  # from the second step the added channels learn too


def test_only_a_unet_grows_and_only_wider():
    narrow, wide = UNet(width=4, depth=3), UNet(width=6, depth=3)
    with pytest.raises(UserError, match="wider than the network"):
        load_grown(narrow, wide.state_dict())
    with pytest.raises(UserError, match="only a U-Net's width can grow"):
        load_grown(UNet(width=6, depth=4), narrow.state_dict())  # another depth: other layers
    with pytest.raises(UserError, match="only a U-Net's width can grow"):
        load_grown(WNet(width=6, depth=3), WNet(width=4, depth=3).state_dict())
    same = UNet(width=4, depth=3)
    load_grown(same, narrow.state_dict())  # the same size: a plain load
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), narrow.state_dict().values()))


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = UNet(1, 4, 3)
    save_checkpoint(tmp_path / "m.pth", checkpoint_dict(model, {"method": "whole"}, 0.42))
    loaded, ckpt = load_model(tmp_path / "m.pth")
    assert ckpt["threshold"] == pytest.approx(0.42) and ckpt["arch"] == {"in_channels": 1, "width": 4, "depth": 3}
    x = torch.rand(1, 1, 40, 40)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)  # BatchNorm folded into the convs
    with pytest.raises(UserError, match="not found.*train"):
        load_model(tmp_path / "absent.pth", " (train it with: python train.py)")
    (tmp_path / "bad.pth").write_bytes((tmp_path / "m.pth").read_bytes()[:500])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_model(tmp_path / "bad.pth")
    ckpt["arch"]["width"] = 8  # weights of width 4 declared as width 8
    save_checkpoint(tmp_path / "wrong.pth", ckpt)
    with pytest.raises(UserError, match="do not match"):
        load_model(tmp_path / "wrong.pth")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match="not a checkpoint of this toolkit"):
        load_model(tmp_path / "foreign.pth")


MALLOC_PROBE = r"""
import resource, sys
sys.path.insert(0, {repo!r})
import numpy as np
if {tuned!r}:
    from unet import tune_malloc
    tune_malloc()

def rounds(n):  # like a forward pass: several big buffers allocated, written, then all freed
    for _ in range(n):
        bufs = [np.empty(5 * 2**20, np.float32) for _ in range(4)]
        for b in bufs:
            b.fill(1)
        del bufs

rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tune_malloc acts on glibc only")
def test_tune_malloc_stops_page_faults_on_reused_buffers():
    """With tune_malloc, freed 20 MB buffers are reused from the heap: no new page faults."""
    faults = {}
    for tuned in (False, True):
        r = subprocess.run([sys.executable, "-c", MALLOC_PROBE.format(repo=str(REPO), tuned=tuned)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        faults[tuned] = int(r.stdout.split()[-1])
    assert faults[False] > 500 and faults[True] < faults[False] / 10, faults


def test_loss_values_are_exact():
    """CE + Dice with weights 1 and 1 and Dice smoothing 1, on a tensor whose value is known."""
    import torch.nn.functional as F

    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[0.0, 1.0], [-2.0, 4.0]]]])
    target = torch.tensor([[[[1, 0], [1, 0]]], [[[0, 1], [0, 0]]]], dtype=torch.bool)
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1).float()
    dice = (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
    expect_dice = 1 - dice.mean()
    assert soft_dice_loss(logits, target.float()).item() == pytest.approx(expect_dice.item(), abs=1e-6)
    bce = F.binary_cross_entropy_with_logits(logits, target.float())
    # a bool target works (labels arrive as masks) and the default weights are 1 and 1
    assert CEDiceLoss()(logits, target).item() == pytest.approx((bce + expect_dice).item(), abs=1e-6)
    assert CEDiceLoss(0.5, 2.0)(logits, target).item() == pytest.approx((0.5 * bce + 2 * expect_dice).item(), abs=1e-6)


def _bars(*specs, size=64):
    """Horizontal bars (row, height) across a size x size map, as a (1, 1, H, W) float tensor."""
    t = torch.zeros(1, 1, size, size)
    for row, height in specs:
        t[0, 0, row:row + height, 4:60] = 1
    return t


def test_soft_skeleton_is_the_middle_of_each_vessel_whatever_its_width():
    from losses import soft_skeleton

    target = _bars((10, 1), (30, 3), (45, 9))
    skel = soft_skeleton(target)[0, 0]
    assert set(skel[:, 32].nonzero().flatten().tolist()) == {10, 31, 49}  # one pixel across each bar, in its middle
    assert float(skel.max()) == 1.0 and float(skel.min()) == 0.0
    blank = torch.zeros(1, 1, 16, 16)
    assert float(soft_skeleton(blank).sum()) == 0 and torch.isfinite(soft_skeleton(blank + 1)).all()  # no crash on either


def test_cldice_and_skeleton_recall_see_a_missing_thin_vessel_that_dice_hardly_sees():
    from losses import skeleton_recall_loss, soft_cldice_loss

    target = _bars((10, 1), (30, 9))
    no_thin = _bars((30, 9))
    logits = lambda m: m * 40 - 20  # noqa: E731 (near-certain predictions)
    assert soft_cldice_loss(logits(target), target).item() < 1e-3
    assert skeleton_recall_loss(logits(target), target).item() < 1e-3
    assert soft_dice_loss(logits(no_thin), target).item() < 0.06  # a tenth of the pixels
    assert soft_cldice_loss(logits(no_thin), target).item() > 0.25  # half of the centreline
    assert 0.45 < skeleton_recall_loss(logits(no_thin), target).item() < 0.6  # the thin bar's share of the centreline
    # a false thin vessel: clDice (precision) sees it, skeleton recall (a recall) does not
    assert soft_cldice_loss(logits(target), no_thin).item() > 0.25
    assert skeleton_recall_loss(logits(target), no_thin).item() < 1e-3


def test_topology_terms_add_to_the_loss_with_their_weights_and_carry_a_gradient():
    from losses import skeleton_recall_loss, soft_cldice_loss

    target = _bars((10, 1), (30, 5)).repeat(2, 1, 1, 1)
    logits = torch.randn(2, 1, 64, 64, requires_grad=True)
    base = CEDiceLoss()(logits, target)
    both = CEDiceLoss(cldice_weight=0.5, skeleton_weight=2.0)(logits, target)
    expect = base + 0.5 * soft_cldice_loss(logits, target) + 2.0 * skeleton_recall_loss(logits, target)
    assert both.item() == pytest.approx(expect.item(), abs=1e-6) and both.item() > base.item()
    both.backward()
    g = logits.grad.clone()
    logits.grad = None
    base.backward()
    assert (g - logits.grad).abs().sum() > 0  # the terms move the weights
