"""What training stores: the checkpoint and threshold chosen on the validation images, and nothing else."""
import numpy as np
import pytest

from dataset import load_split
from inference import Segmenter
from metrics import best_threshold, binary_metrics, pooled

TINY = ["--epochs", "3", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--batch-size", "2"]


def test_stored_threshold_is_the_f1_optimum_on_the_validation_maps(tiny_dataset, tmp_path):
    import torch

    import train

    out = tmp_path / "m.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(out)])
    ckpt = torch.load(out, weights_only=True)
    val = [s for s in load_split(tiny_dataset, "DRIVE", "train") if s.name in ckpt["info"]["val_images"]]
    assert len(val) == 1
    seg = Segmenter.from_file(out)
    y, p = pooled([(s.label, seg.probability(s.image, s.fov), s.fov) for s in val])
    t, f1 = best_threshold(y, p)
    assert ckpt["threshold"] == pytest.approx(t, abs=1e-4)
    assert ckpt["threshold"] != 0.5
    assert ckpt["info"]["val_f1"] == pytest.approx(f1, abs=1e-4)
    assert binary_metrics(y, p >= ckpt["threshold"])["f1"] == pytest.approx(f1, abs=1e-4)
    # the best epoch's weights are kept: the log's best row is the one stored
    rows = (tmp_path / "m.pth.log.csv").read_text().splitlines()[1:]
    f1s = [float(r.split(",")[2]) for r in rows]
    assert ckpt["info"]["best_epoch"] == 1 + int(np.argmax(f1s))
    assert (tmp_path / "m.onnx").is_file()  # exported at the end of training


def test_a_new_run_keeps_a_copy_of_the_weights_it_replaces(tiny_dataset, tmp_path):
    import train

    out = tmp_path / "m.pth"
    out.write_bytes(b"previous weights")
    train.main(["--root", str(tiny_dataset), "--epochs", "1", *TINY[2:], "--out", str(out)])
    assert (tmp_path / "m.pth.bak").read_bytes() == b"previous weights"
    assert out.read_bytes() != b"previous weights"
