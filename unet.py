"""The U-Net of the original project, with its width and depth as parameters.

``UNet(width=64, depth=5)`` is the original (4 down / 4 up, 31 M parameters); the shipped
``width=8, depth=4`` (121 k parameters) segments a DRIVE image in ~0.08 s on a 2-core CPU.
Checkpoints are self-describing: architecture, preprocessing and threshold travel with the weights.
"""
import io
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from allocator import tune_malloc  # noqa: F401  (re-exported: training and tests call it from here)
from cli import UserError

CHECKPOINT_FORMAT = "retina-vessel-unet/1"


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice."""

    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Transposed-conv upsampling, pad to the skip connection's size, concatenate, double conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout)

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dy or dx:
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net returning one logit per pixel (vessel vs background), or ``out_channels`` of them (the
    artery/vein model: vessel, and artery given vessel; av.py).

    width: channels of the first level (doubles at each level down).
    depth: number of resolution levels (depth - 1 poolings).
    """

    def __init__(self, in_channels=1, width=8, depth=3, out_channels=1):
        super().__init__()
        if depth < 2 or width < 1 or out_channels < 1:
            raise ValueError("depth must be >= 2, width and out_channels >= 1")
        self.arch = {"in_channels": in_channels, "width": width, "depth": depth}
        if out_channels != 1:  # recorded only when not 1: the arch of older weights stays as it was
            self.arch["out_channels"] = out_channels
        chans = [width * 2**i for i in range(depth)]
        self.inc = DoubleConv(in_channels, chans[0])
        self.downs = nn.ModuleList(DoubleConv(chans[i], chans[i + 1]) for i in range(depth - 1))
        self.ups = nn.ModuleList(Up(chans[i + 1], chans[i]) for i in reversed(range(depth - 1)))
        self.outc = nn.Conv2d(chans[0], out_channels, 1)

    @property
    def align(self):
        """Input sizes that are multiples of this need no internal padding."""
        return 2 ** (self.arch["depth"] - 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


class WNet(nn.Module):
    """Two U-Nets in sequence (a "W-Net"): the second sees the image and the first one's
    probabilities (every output: for the artery/vein model, its vessel and artery maps).
    ``stage_logits`` returns both outputs so training can put the loss on each; ``forward`` returns
    the last one, so inference treats it like a U-Net."""

    def __init__(self, in_channels=1, width=8, depth=3, stages=2, out_channels=1):
        super().__init__()
        if stages != 2:
            raise ValueError("a W-Net has 2 stages")
        self.arch = {"in_channels": in_channels, "width": width, "depth": depth, "stages": stages}
        if out_channels != 1:
            self.arch["out_channels"] = out_channels
        self.first = UNet(in_channels, width, depth, out_channels)
        self.second = UNet(in_channels + out_channels, width, depth, out_channels)

    @property
    def align(self):
        return self.first.align

    def stage_logits(self, x):
        a = self.first(x)
        return [a, self.second(torch.cat([x, torch.sigmoid(a)], dim=1))]

    def forward(self, x, all_stages=False):
        outs = self.stage_logits(x)
        return outs if all_stages else outs[-1]


class Ensemble(nn.Module):
    """``members`` networks of one architecture, trained from different seeds on the same images;
    their logits are averaged. With ``inputs``, member i sees input channel ``inputs[i]`` (members
    trained on different channels, e.g. gray and green). ``forward`` returns one logit map, so
    inference (and the ONNX export) treats it like one U-Net."""

    def __init__(self, members=2, inputs=None, **arch):
        super().__init__()
        if members < 2:
            raise ValueError("an ensemble has 2 or more members")
        if inputs is not None and len(inputs) != members:
            raise ValueError(f"inputs names {len(inputs)} input channels for {members} members")
        self.members = nn.ModuleList(build_model(arch) for _ in range(members))
        self.arch = dict(self.members[0].arch, members=members)
        # inputs[i]: the input channel member i sees (its own preprocessing); None: all see the one channel
        self.inputs = None if inputs is None else [int(i) for i in inputs]
        if self.inputs is not None:
            self.arch["inputs"] = self.inputs

    @property
    def align(self):
        return self.members[0].align

    @property
    def in_channels(self):
        if self.inputs is None:  # every member reads the whole input (e.g. colour: 3 channels)
            return self.members[0].arch["in_channels"]
        return max(self.inputs) + 1

    def forward(self, x):
        if self.inputs is None:
            return torch.stack([m(x) for m in self.members]).mean(0)
        return torch.stack([m(x[:, i:i + 1]) for m, i in zip(self.members, self.inputs)]).mean(0)


def build_model(arch):
    """The network an ``arch`` dict describes (``stages`` 1: U-Net, the default; 2: W-Net;
    ``members`` > 1: an ensemble of that many)."""
    arch = dict(arch)
    members = arch.pop("members", 1)
    if members != 1:
        return Ensemble(members, **arch)
    stages = arch.pop("stages", 1)
    return UNet(**arch) if stages == 1 else WNet(stages=stages, **arch)


def load_grown(model, state_dict):
    """Load ``state_dict`` into ``model``; if it is a narrower U-Net of the same design (``width``
    smaller, all else equal), grow it: every layer's first channels are the narrow network's, the
    added channels keep ``model``'s fresh initialisation, and every weight that reads an added channel
    starts at zero. The grown network computes exactly what the narrow one did, and training teaches
    it to use the added channels (the zero weights get gradients from the start). This is the "zero
    the consumers" way of widening a trained network (compare Net2WiderNet, Chen et al. 2016, which
    copies channels instead)."""
    mine = model.state_dict()
    same_layers = mine.keys() == state_dict.keys()
    if same_layers and all(mine[k].shape == state_dict[k].shape for k in mine):
        model.load_state_dict(state_dict)
        return
    if not isinstance(model, UNet) or not same_layers:
        raise UserError("these weights are not a narrower network of the same design; only a U-Net's width can grow")
    readers = {}  # weight name -> (its input-channel dim, how many concatenated blocks that input has)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            readers.setdefault(f"{name}.weight", (0 if isinstance(module, nn.ConvTranspose2d) else 1, 1))
        elif isinstance(module, Up):  # (named before its own convolutions)
            readers[f"{name}.conv.0.weight"] = (1, 2)  # reads [skip, upsampled], concatenated
    grown = {}
    for key, new in mine.items():
        old = state_dict[key]
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise UserError(f"these weights are wider than the network at {key}; only a U-Net's width can grow")
        out = new.clone()
        in_dim, blocks = readers.get(key, (None, 1))
        out_dim = None if in_dim is None else 1 - in_dim
        if in_dim is not None:  # the old channels read no added channel (added ones read everything)
            out.narrow(out_dim, 0, old.shape[out_dim]).zero_()
        for b in range(blocks):  # the old tensor, block by block along the input dim
            src, dst = [], []
            for d, (o, n) in enumerate(zip(old.shape, new.shape)):
                ob, nb = (o // blocks, n // blocks) if d == in_dim else (o, n)
                src.append(slice(b * ob, (b + 1) * ob) if d == in_dim else slice(0, o))
                dst.append(slice(b * nb, b * nb + ob) if d == in_dim else slice(0, o))
            out[tuple(dst)] = old[tuple(src)]
        grown[key] = out
    model.load_state_dict(grown)


def fuse_for_inference(model):
    """Fold every BatchNorm into the convolution before it and store weights channels-last
    (same arithmetic, fewer passes over memory: ~25 % faster on a CPU). Only for inference; the
    model must not be trained afterwards."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for mod in model.modules():
        if isinstance(mod, DoubleConv):
            for i in (0, 3):
                if isinstance(mod[i + 1], nn.BatchNorm2d):
                    mod[i] = fuse_conv_bn_eval(mod[i], mod[i + 1])
                    mod[i + 1] = nn.Identity()
    return model.to(memory_format=torch.channels_last)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def checkpoint_dict(model, preprocess, threshold, info=None):
    """What a weights file holds: enough to run inference with no other knowledge."""
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": dict(model.arch),
        "preprocess": dict(preprocess),
        "threshold": float(threshold),
        "info": dict(info or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def save_checkpoint(path, ckpt):
    """Write a checkpoint atomically (temporary file, then replace)."""
    from imio import atomic_replace

    atomic_replace(path, lambda tmp: torch.save(ckpt, tmp), suffix=".tmp")


def read_checkpoint(path, hint=""):
    """Load a checkpoint dict, turning every user-caused failure into one UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found{hint}")
    try:
        ckpt = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}); re-download or retrain it") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a checkpoint of this toolkit (expected format {CHECKPOINT_FORMAT})")
    return ckpt


def load_model(path, hint=""):
    """Return (model ready for inference: eval mode, BatchNorm folded; checkpoint dict) from a weights file."""
    ckpt = read_checkpoint(path, hint)
    try:
        model = build_model(ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: weights do not match the architecture they declare ({first})") from None
    return fuse_for_inference(model), ckpt


class TorchNet:
    """The network call of inference for a PyTorch model (the only torch-specific part of it).

    Takes a float32 N x C x H x W array (H, W multiples of ``align``), returns probabilities
    N x K x H x W (K: the model's outputs, 1 for a vessel model). ``onnx_model.OnnxNet`` is the same call through ONNX Runtime.
    """

    backend = "torch"

    def __init__(self, model, device=None):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.align = model.align
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, x):
        xb = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self.model(xb)).float().cpu().numpy()
