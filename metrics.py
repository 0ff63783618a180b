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


def binary_metrics(y, pred):
    """F1 (= Dice), accuracy, sensitivity, specificity, MCC, IoU of boolean predictions."""
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[False, True]).ravel())
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


def all_metrics(y, p, threshold, pred=None):
    """AUC-ROC, AUC-PR (average precision) of the scores ``p`` and the binary metrics of ``pred``
    (default: ``p >= threshold``; e.g. a mask with its fragments removed, postprocess.py)."""
    out = {"auc_roc": float(roc_auc_score(y, p)), "auc_pr": float(average_precision_score(y, p))}
    out.update(binary_metrics(y, p >= threshold if pred is None else pred))
    return out
