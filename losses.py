"""Training loss: binary cross-entropy on logits + soft Dice on probabilities (differentiable),
optionally + soft clDice (a topology term on soft skeletons; Shit et al., "clDice - a novel
topology-preserving loss function for tubular structure segmentation", CVPR 2021) and/or a
skeleton-recall term (Kirchhoff et al., "Skeleton Recall Loss for connectivity conserving and
resource efficient segmentation of thin tubular structures", ECCV 2024)."""
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


def _soft_erode(x):
    """Grey-level erosion by a 3x3 cross (min of a vertical and a horizontal 3-pixel min)."""
    vertical = -F.max_pool2d(-x, (3, 1), 1, (1, 0))
    horizontal = -F.max_pool2d(-x, (1, 3), 1, (0, 1))
    return torch.minimum(vertical, horizontal)


def _soft_open(x):
    return F.max_pool2d(_soft_erode(x), 3, 1, 1)


def soft_skeleton(x, iterations=10):
    """The soft skeleton of maps ``x`` (N, 1, H, W) in [0, 1] (Shit et al. 2021, Algorithm 1): what
    each of ``iterations`` erosions removes that an opening would not restore, accumulated. On a
    binary map it is a (thick-ish) centreline of every structure up to 2 * iterations + 1 px wide;
    differentiable through max-pooling."""
    skeleton = F.relu(x - _soft_open(x))
    for _ in range(iterations):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_open(x))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def soft_cldice_loss(logits, target, iterations=5, eps=1.0):
    """1 - soft clDice: the harmonic mean of topology precision (the predicted soft skeleton's share
    inside the target) and topology sensitivity (the target skeleton's share inside the prediction),
    over the batch's pixels (Shit et al. 2021, eq. 1-3). ``iterations`` 5: skeletons of vessels up to
    11 px wide (DRIVE's widest are about 10 px at the training scale); the target's without a gradient."""
    prob = torch.sigmoid(logits)
    target = target.to(prob.dtype)
    skel_pred = soft_skeleton(prob, iterations)
    with torch.no_grad():
        skel_true = soft_skeleton(target, iterations)
    precision = ((skel_pred * target).sum() + eps) / (skel_pred.sum() + eps)
    sensitivity = ((skel_true * prob).sum() + eps) / (skel_true.sum() + eps)
    return 1 - 2 * precision * sensitivity / (precision + sensitivity)


def skeleton_recall_loss(logits, target, iterations=5, eps=1.0):
    """1 - the share of the target's skeleton that the prediction covers (soft recall): every
    vessel's centreline counts per pixel of length, whatever its width, so a missed capillary costs
    as much as a missed stretch of a trunk (Kirchhoff et al. 2024; their skeleton is a thinned and
    dilated target, here the soft skeleton of the target, a centreline about 1-2 px thick). No
    gradient flows through the skeleton: it is only a weighting of the target."""
    prob = torch.sigmoid(logits)
    with torch.no_grad():
        skel = soft_skeleton(target.to(prob.dtype), iterations)
    return 1 - ((skel * prob).sum() + eps) / (skel.sum() + eps)


class CEDiceLoss(nn.Module):
    """``bce_weight * BCEWithLogits + dice_weight * (1 - soft Dice)``, plus, when their weights are
    not 0, ``cldice_weight * (1 - soft clDice)`` and ``skeleton_weight * (1 - skeleton recall)``."""

    def __init__(self, bce_weight=1.0, dice_weight=1.0, cldice_weight=0.0, skeleton_weight=0.0):
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.extra = [(w, term) for w, term in ((cldice_weight, soft_cldice_loss), (skeleton_weight, skeleton_recall_loss))
                      if w]

    def forward(self, logits, target):
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        loss = self.bce_weight * bce + self.dice_weight * soft_dice_loss(logits, target)
        for weight, term in self.extra:
            loss = loss + weight * term(logits, target)
        return loss


class ArteryVeinLoss(nn.Module):
    """The loss of the artery/vein model (two outputs; av.py): ``vessel_loss`` (a ``CEDiceLoss``) on
    the first, the vessel map, against every annotated vessel pixel (label > 0, uncertain included),
    plus binary cross-entropy on the second, "artery given vessel", over the pixels annotated artery
    (1) or vein (2) only: background has no kind, and uncertain pixels are neither (av.py's layout)."""

    def __init__(self, vessel_loss, kind_weight=1.0):
        super().__init__()
        self.vessel_loss, self.kind_weight = vessel_loss, kind_weight

    def forward(self, logits, target):
        target = target.to(logits.dtype)
        loss = self.vessel_loss(logits[:, :1], (target > 0).to(logits.dtype))
        known = ((target == 1) | (target == 2)).to(logits.dtype)
        kind = F.binary_cross_entropy_with_logits(logits[:, 1:2], (target == 1).to(logits.dtype), weight=known,
                                                  reduction="sum") / known.sum().clamp(min=1)
        return loss + self.kind_weight * kind


UNLABELLED = 255  # the label of a photograph without one (train.py --unlabelled): only the teachers' term learns it


class DistillationLoss(nn.Module):
    """Knowledge distillation (Hinton et al. 2015, "Distilling the knowledge in a neural network"): the
    model's own ``loss`` against the labels (target channel 0) plus ``weight`` x binary cross-entropy of
    each output against a teacher's probability of it (target channels 1..K, 0-255: the teacher's maps
    carried through the same augmentation as the labels; ``train.py --teacher``). The artery/vein
    model's second output, "artery given vessel", is weighed by the teacher's vessel probability,
    where a kind has a meaning, and so is learnt on uncertain and unannotated vessel pixels too. A
    sample whose label has ``UNLABELLED`` pixels (a photograph without labels, its FOV marked so) is
    left out of the labels' loss and learnt from the teachers alone."""

    def __init__(self, loss, weight=1.0):
        super().__init__()
        self.loss, self.weight = loss, weight

    def forward(self, logits, target):
        target = target.to(logits.dtype)
        soft = target[:, 1:] / 255.0
        if soft.shape[1] != logits.shape[1]:
            raise ValueError(f"{soft.shape[1]} teacher maps for {logits.shape[1]} outputs")
        term = F.binary_cross_entropy_with_logits(logits[:, :1], soft[:, :1])
        if logits.shape[1] > 1:
            vessel = soft[:, :1]
            term = term + F.binary_cross_entropy_with_logits(
                logits[:, 1:], soft[:, 1:], weight=vessel.expand_as(soft[:, 1:]),
                reduction="sum") / (vessel.sum() * (logits.shape[1] - 1)).clamp(min=1)
        labelled = ~(target[:, 0] == UNLABELLED).flatten(1).any(1)
        hard = self.loss(logits[labelled], target[labelled, :1]) if labelled.any() else 0.0
        return hard + self.weight * term
