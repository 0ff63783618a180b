"""Training loss: binary cross-entropy on logits + soft Dice on probabilities (differentiable)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def soft_dice_loss(logits, target, eps=1.0):
    """1 - soft Dice between sigmoid(logits) and a {0,1} target, averaged over the batch.

    Computed on tensors end to end (no ``.item()``), so it carries a gradient.
    """
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1).to(prob.dtype)
    inter = (prob * target).sum(1)
    dice = (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)
    return 1 - dice.mean()


class CEDiceLoss(nn.Module):
    """``bce_weight * BCEWithLogits + dice_weight * (1 - soft Dice)``."""

    def __init__(self, bce_weight=1.0, dice_weight=1.0):
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight

    def forward(self, logits, target):
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
