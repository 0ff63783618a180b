"""Training tensors: joint image/label augmentation, the dataset of (input, label) pairs, batching.

Only training imports this (it needs torch and torchvision); reading and pairing files is in dataset.py.
"""
import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from cli import UserError


class RandomGamma(v2.Transform):
    """Gamma correction of the image (never the label) by a factor drawn uniformly from ``gamma``."""

    def __init__(self, gamma=(0.7, 1.5)):
        super().__init__()
        self.gamma = tuple(gamma)

    def make_params(self, flat_inputs):
        return {"gamma": float(torch.empty(1).uniform_(*self.gamma))}

    def transform(self, inpt, params):
        if isinstance(inpt, tv_tensors.Image):
            return v2.functional.adjust_gamma(inpt, params["gamma"])
        return inpt


class CameraLook:
    """Another camera's look, drawn at random and applied to a gray photograph *before* its contrast
    enhancement (``enhance``, e.g. CLAHE), which then sees it as it would see that camera's picture:
    uneven illumination (a smooth multiplicative field, up to +-30 %), haze (local contrast cut to
    50-100 % on half the samples), gamma 0.7-1.4, the optics' blur (sigma up to 1.2 px, a third of
    them) and sensor noise (sigma up to 4 gray levels, half of them). Draws come from torch's
    generator, so ``--seed`` fixes them. Labels are untouched.
    """

    def __init__(self, enhance):
        self.enhance = enhance

    def __call__(self, gray):
        g = gray.astype(np.float32)
        h, w = g.shape
        r = torch.rand(7).tolist()
        amp = 0.3 * r[0]
        grid = (1 + amp * (2 * torch.rand(3, 3) - 1)).numpy()
        g *= cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        if r[5] < 0.5:  # haze: details fade towards the local background
            background = cv2.GaussianBlur(g, (0, 0), max(h, w) / 40)
            g = background + (0.5 + 0.5 * r[6]) * (g - background)
        g = 255.0 * (np.clip(g, 0, 255) / 255.0) ** (0.7 + 0.7 * r[1])
        if r[2] < 1 / 3:
            g = cv2.GaussianBlur(g, (0, 0), 0.2 + 1.0 * r[3])
        if r[4] < 0.5:
            g += 4.0 * float(torch.rand(1)) * torch.randn(h, w).numpy()
        return self.enhance(np.clip(np.round(g), 0, 255).astype(np.uint8))


def augmentation(strength="default", crop=0, scale=(0.9, 1.1)):
    """Joint image/label augmentation (torchvision v2): flips, rotations, rescaling by a random factor
    in ``scale``, contrast, then (``crop`` > 0) a random ``crop`` x ``crop`` window, zero-padded where
    the image is smaller.

    ``strength="camera"`` is the default here; ``CameraLook`` adds the rest before enhancement.
    ``strength="strong"`` adds what differs between cameras after CLAHE: gamma, and the sharpness of
    the optics (a blur or a sharpening, each on a third of the samples). Labels are never touched."""
    steps = [] if strength == "none" else [  # "camera": these, after CameraLook before enhancement
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomAffine(degrees=180, scale=tuple(scale)),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ]
    if strength == "strong":
        steps += [
            v2.RandomApply([RandomGamma((0.7, 1.5))], p=0.5),
            v2.RandomChoice([v2.GaussianBlur(5, sigma=(0.3, 1.2)), v2.RandomAdjustSharpness(2.0, p=1.0),
                             v2.Identity()]),
        ]
    if crop:
        steps.append(v2.RandomCrop(crop, pad_if_needed=True))
    return v2.Compose(steps) if steps else None


class VesselDataset(torch.utils.data.Dataset):
    """(input, label) pairs as tensors: CxHxW float in [0, 1], 1xHxW float {0, 1} (or the class
    indices of artery/vein labels, 0-3: av.py). A label HxWxK (uint8) comes out KxHxW: the label and
    K-1 maps that follow it through the augmentation (a teacher's probabilities, 0-255:
    losses.DistillationLoss).

    ``images`` are uint8 gray (HxW) or colour (HxWxC) arrays already preprocessed as the model
    expects, or, with ``look``
    (a ``CameraLook``), gray photographs that ``look`` alters and then enhances, anew for every draw.
    """

    def __init__(self, images, labels, transform=None, look=None):
        if len(images) != len(labels):
            raise ValueError("images and labels differ in number")
        if not images:
            raise UserError("the training set is empty")
        self.images, self.labels, self.transform, self.look = images, labels, transform, look

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i] if self.look is None else self.look(self.images[i])
        img = torch.from_numpy(np.array(img))
        img = tv_tensors.Image(img[None] if img.ndim == 2 else img.permute(2, 0, 1))
        lab = torch.from_numpy(self.labels[i].astype(np.uint8))
        lab = tv_tensors.Mask(lab[None] if lab.ndim == 2 else lab.permute(2, 0, 1))
        if self.transform is not None:
            img, lab = self.transform(img, lab)
        return img.as_subclass(torch.Tensor).float() / 255.0, lab.as_subclass(torch.Tensor).float()


def pad_collate(batch):
    """Stack samples, zero-padding to the largest height/width in the batch."""
    h = max(x.shape[-2] for x, _ in batch)
    w = max(x.shape[-1] for x, _ in batch)
    xs = torch.zeros(len(batch), batch[0][0].shape[0], h, w)
    ys = torch.zeros(len(batch), batch[0][1].shape[0], h, w)
    for i, (x, y) in enumerate(batch):
        xs[i, :, : x.shape[-2], : x.shape[-1]] = x
        ys[i, :, : y.shape[-2], : y.shape[-1]] = y
    return xs, ys
