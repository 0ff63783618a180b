"""Segmentation metrics the way the field reports them: inside the FOV, pixels pooled over images.

AUCs and curves come from scikit-learn; threshold metrics from the confusion matrix.
"""
import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score


def pooled(pairs):
    """Concatenate (truth, score) inside the FOV over images: ``pairs`` of (label, score, fov)."""
    ys, ps = [], []
    for label, score, fov in pairs:
        ys.append(label[fov].ravel())
        ps.append(score[fov].ravel())
    return np.concatenate(ys).astype(bool), np.concatenate(ps)


def best_threshold(y, p):
    """Threshold on probabilities ``p`` maximising F1 against ``y`` (use on training/validation data only)."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1[:-1]))
    return float(thresholds[i]), float(f1[i])


def confusion(y, pred):
    """The confusion counts of boolean predictions: [tp, fp, fn, tn] (ints)."""
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[False, True]).ravel())
    return [tp, fp, fn, tn]


def binary_metrics(y, pred):
    """F1 (= Dice), accuracy, sensitivity, specificity, MCC, IoU of boolean predictions."""
    return counts_metrics(*confusion(y, pred))


def counts_metrics(tp, fp, fn, tn):
    """``binary_metrics`` of the confusion counts (pooled over images: their sums)."""
    tp, fp, fn, tn = (int(v) for v in (tp, fp, fn, tn))
    n = tp + tn + fp + fn
    denom = np.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    return {
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "accuracy": (tp + tn) / max(n, 1),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "mcc": (tp * tn - fp * fn) / denom if denom > 0 else 0.0,
        "iou": tp / max(tp + fp + fn, 1),
    }


def auc_metrics(y, p):
    """AUC-ROC and AUC-PR (average precision) of the scores ``p`` against the boolean labels ``y``."""
    return {"auc_roc": float(roc_auc_score(y, p)), "auc_pr": float(average_precision_score(y, p))}


def all_metrics(y, p, threshold, pred=None):
    """``auc_metrics`` of the scores ``p`` and the binary metrics of ``pred``
    (default: ``p >= threshold``; e.g. a mask with its fragments removed, postprocess.py)."""
    return {**auc_metrics(y, p), **binary_metrics(y, p >= threshold if pred is None else pred)}


def interval_over_images(per_image, score, keys, level=0.95, n_resamples=2000, seed=0):
    """How far pooled scores could move with other images of the same kind: for each of ``keys``, the
    percentile bootstrap interval at ``level`` over the images (``scipy.stats.bootstrap``; Efron &
    Tibshirani 1993). ``per_image``: each image's counts, a dict of arrays; a resample draws images with
    replacement, sums their counts and scores the sums with ``score`` (counts -> {key: value or None}).
    The images, not the pixels, are the unit: a set of 20 says little more than 20 draws.
    {key: (low, high)}; None for a key with no value in a resample, and for every key with fewer than
    two images."""
    import warnings

    from scipy.stats import DegenerateDataWarning, bootstrap

    if len(per_image) < 2:
        return dict.fromkeys(keys)
    stacked = {k: np.stack([np.asarray(c[k]) for c in per_image]) for k in per_image[0]}

    def scores(idx):
        pooled = score({k: v[idx].sum(axis=0) for k, v in stacked.items()})
        return np.array([np.nan if pooled[k] is None else pooled[k] for k in keys])

    with warnings.catch_warnings():  # alike images: every resample the same, which scipy warns of
        warnings.simplefilter("ignore", DegenerateDataWarning)
        res = bootstrap((np.arange(len(per_image)),), scores, vectorized=False, n_resamples=n_resamples,
                        confidence_level=level, method="percentile", random_state=seed)
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    return {k: None if not (np.isfinite(lo) and np.isfinite(hi)) else (float(lo), float(hi))
            for k, lo, hi in zip(keys, low, high)}


INTERVAL_KEYS = ("f1", "sensitivity", "specificity", "accuracy")


def vessel_interval(per_image, keys=INTERVAL_KEYS, **kw):
    """``interval_over_images`` of the threshold metrics (``counts_metrics``) of ``per_image``: each
    image's {"confusion": [tp, fp, fn, tn]} inside its FOV."""
    return interval_over_images(per_image, lambda c: counts_metrics(*c["confusion"]), keys, **kw)
