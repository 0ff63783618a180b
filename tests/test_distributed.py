"""Devices and torchrun: two local processes (Gloo on the CPU), as on a cluster."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, disc_image
from imio import write_png

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TINY = ["--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--augment", "none", "--threads", "1"]


@pytest.fixture
def five_images(tmp_path):
    """ROOT/DRIVE/train with 5 synthetic images (4 train + 1 validation)."""
    root = tmp_path / "root"
    for i in range(1, 6):
        img, lab, fov = disc_image(128, 144, 60, seed=i)
        for sub, arr in (("image", img), ("label", lab), ("mask", fov)):
            write_png(root / "DRIVE" / "train" / sub / f"{i:02d}_training.png", arr)
    return root


def run(cmd, cwd, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env, timeout=300, **kw)


def params(path):
    """The trained weights (parameters, not BatchNorm running statistics) after the last epoch."""
    state = torch.load(path, weights_only=False)["model"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_two_processes_train_the_same_weights_as_one(five_images, tmp_path):
    """torchrun x2 with batch 1 per process == one process, batch 1, 2 accumulated micro-batches
    (each process normalises over its own batch on CPUs: see trainer.py)."""
    common = [REPO / "train.py", "--root", five_images, *TINY, "--epochs", "3", "--batch-size", "1"]
    r = run([*TORCHRUN, *common, "--out", tmp_path / "ddp.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes" in r.stderr
    r = run([sys.executable, *common, "--accumulate", "2", "--out", tmp_path / "one.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = params(tmp_path / "ddp.pth.resume.pth"), params(tmp_path / "one.pth.resume.pth")
    assert a.keys() == b.keys()
    first = torch.load(tmp_path / "ddp.pth.resume.pth", weights_only=False)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # training moved the weights (the comparison is not between two untouched initialisations)
    torch.manual_seed(0)
    assert first["epoch"] == 3 and len(first["log"]) == 3
    # rank 0 alone wrote: one log with one row per epoch, and the loss is over both processes' samples
    assert (tmp_path / "ddp.pth.log.csv").read_text().count("\n") == 4
    assert (tmp_path / "ddp.pth").is_file() and (tmp_path / "ddp.onnx").is_file()


def test_the_artery_vein_model_trains_under_torchrun_as_in_one_process(tmp_path):
    """train.py --av: the same data-parallel result as one process (its two outputs, its loss)."""
    from conftest import write_av_set

    root = write_av_set(tmp_path / "root", {"train": ("training", 5)})
    common = [REPO / "train.py", "--root", root, "--dataset", "DRIVE-AV", "--av", *TINY, "--epochs", "2",
              "--batch-size", "1"]
    r = run([*TORCHRUN, *common, "--out", tmp_path / "ddp.pth"], cwd=tmp_path)
    assert r.returncode == 0 and "2 processes" in r.stderr, r.stderr[-3000:]
    r = run([sys.executable, *common, "--accumulate", "2", "--out", tmp_path / "one.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = params(tmp_path / "ddp.pth.resume.pth"), params(tmp_path / "one.pth.resume.pth")
    assert a["outc.weight"].shape[0] == 2 and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert "val_av_f1" in (tmp_path / "ddp.pth.log.csv").read_text()


def test_weight_averaging_under_torchrun_measures_statistics_over_every_process(five_images, tmp_path):
    """--ema with two processes: the average is one process's, and its BatchNorm statistics are measured
    over both processes' samples (each process over its share, then averaged), not over rank 0's share."""
    common = [REPO / "train.py", "--root", five_images, *TINY, "--epochs", "2", "--batch-size", "1", "--ema", "0.9"]
    r = run([*TORCHRUN, *common, "--out", tmp_path / "ddp.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([sys.executable, *common, "--accumulate", "2", "--out", tmp_path / "one.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"{n}.pth.resume.pth", weights_only=False)["ema"] for n in ("ddp", "one"))
    weights = [k for k in a if "running_" not in k and "num_batches" not in k and "n_averaged" not in k]
    assert weights and max((a[k] - b[k]).abs().max().item() for k in weights) < 1e-5
    # the first BatchNorm sees each sample alone (what comes before it has no batch statistics), so its
    # mean over the four training samples is the same however they are split into batches and processes
    key = "module.inc.1.running_mean"
    assert (a[key] - b[key]).abs().max().item() < 1e-5 and a[key].abs().max().item() > 1e-3


def test_sharded_prediction_gives_the_same_files_each_image_once(tmp_path):
    src = tmp_path / "in"
    for i in range(5):
        img, _, _ = disc_image(90 + i, 100, 40, seed=i)
        write_png(src / f"im{i}.png", img)
    r1 = run([sys.executable, REPO / "predict.py", "--weights", REPO / "UNet.onnx", "--input", src, "--output", tmp_path / "one", "--prob"], cwd=tmp_path)
    r2 = run([*TORCHRUN, REPO / "predict.py", "--weights", REPO / "UNet.onnx", "--input", src, "--output", tmp_path / "two", "--prob"], cwd=tmp_path)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-3000:]
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert len(one) == 10 and one == two
    assert "segmented 5 image(s) on 2 processes (3 + 2)" in r2.stdout  # each image once, not twice
    assert r2.stdout.count("segmented") == 1  # rank 0 alone reports
    # an interrupted run continues: only the missing image is segmented again
    (tmp_path / "two" / "im3.png").unlink()
    r3 = run([*TORCHRUN, REPO / "predict.py", "--weights", REPO / "UNet.onnx", "--input", src, "--output", tmp_path / "two", "--prob",
              "--skip-existing"], cwd=tmp_path)
    assert r3.returncode == 0 and "segmented 1 image(s) on 2 processes (1 + 0), 4 skipped" in r3.stdout, r3.stdout
    assert (tmp_path / "two" / "im3.png").read_bytes() == one["im3.png"]


def test_sharded_measuring_gives_the_same_table_each_image_once(tmp_path):
    src = tmp_path / "masks"
    for i in range(5):
        _, label, _ = disc_image(120 + 10 * i, 140, 55, seed=i)
        write_png(src / f"m{i}.png", label)
    r1 = run([sys.executable, REPO / "measure.py", "--input", src, "--output", tmp_path / "one" / "m.csv",
              "--workers", "1"], cwd=tmp_path)
    r2 = run([*TORCHRUN, REPO / "measure.py", "--input", src, "--output", tmp_path / "two" / "m.csv"], cwd=tmp_path)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr[-3000:]
    assert "measured 5 of 5 image(s) on 2 processes (3 + 2)" in r2.stdout and r2.stdout.count("measured") == 1
    assert (tmp_path / "one" / "m.csv").read_text() == (tmp_path / "two" / "m.csv").read_text()
    # continued after an interruption: only the missing image is measured again
    (tmp_path / "two" / "m3_measurements.json").unlink()
    r3 = run([*TORCHRUN, REPO / "measure.py", "--input", src, "--output", tmp_path / "two" / "m.csv",
              "--skip-existing"], cwd=tmp_path)
    assert r3.returncode == 0 and "on 2 processes (1 + 0), 4 reused" in r3.stdout, r3.stdout + r3.stderr
    assert (tmp_path / "one" / "m.csv").read_text() == (tmp_path / "two" / "m.csv").read_text()


def test_resume_after_a_kill_under_torchrun(five_images, tmp_path):
    common = [*TORCHRUN, REPO / "train.py", "--root", five_images, *TINY, "--epochs", "6", "--batch-size", "1"]
    r = run([*common, "--out", tmp_path / "ref.pth"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(c) for c in [*common, "--out", tmp_path / "cut.pth"]], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = tmp_path / "cut.pth.log.csv"
    t0 = time.time()
    while not (log.is_file() and log.read_text().count("\n") >= 3):  # 2 epochs done
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - t0 < 240
        time.sleep(0.05)
    # both workers (torchrun starts each in a session of its own), then the launcher: as in a power cut
    subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])
    proc.kill()
    proc.wait()
    done = torch.load(tmp_path / "cut.pth.resume.pth", weights_only=False)["epoch"]
    assert 2 <= done < 6
    r = run([*common, "--out", tmp_path / "cut.pth", "--resume"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming after epoch {done} of 6" in r.stderr
    a, b = params(tmp_path / "ref.pth.resume.pth"), params(tmp_path / "cut.pth.resume.pth")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_device_cuda_without_a_gpu_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: see test_training_and_prediction_on_cuda")
    for args in (["train.py", "--epochs", "1"],
                 ["predict.py", "--weights", REPO / "UNet.pth", "--input", REPO / "predict" / "img.png"]):
        r = run([sys.executable, REPO / args[0], *args[1:], "--device", "cuda"], cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "no CUDA GPU" in lines[0], r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_training_and_prediction_on_cuda(five_images, tmp_path):
    r = run([sys.executable, REPO / "train.py", "--root", five_images, *TINY, "--epochs", "2", "--device", "cuda",
             "--out", tmp_path / "gpu.pth"], cwd=tmp_path)
    assert r.returncode == 0 and "on cuda" in r.stderr, r.stderr[-3000:]
    from inference import Segmenter

    img, _, _ = disc_image(90, 100, 40)
    a = Segmenter.from_file(tmp_path / "gpu.pth", device="cpu").probability(img)
    b = Segmenter.from_file(tmp_path / "gpu.pth", device="cuda").probability(img)
    assert np.abs(a - b).max() < 1e-3


SAVE_AS_CUDA = r"""
import sys, torch
sys.path.insert(0, {repo!r})
from unet import UNet, checkpoint_dict, save_checkpoint
torch.serialization.register_package(0, lambda obj: "cuda:0", lambda obj, loc: None)  # tag every tensor as on a GPU
torch.manual_seed(0)
save_checkpoint({out!r}, checkpoint_dict(UNet(1, 4, 3), {{"method": "whole", "enhance": "none"}}, 0.4))
"""


def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(tmp_path):
    import zipfile

    from inference import Segmenter
    from unet import UNet

    out = tmp_path / "gpu.pth"
    r = run([sys.executable, "-c", SAVE_AS_CUDA.format(repo=str(REPO), out=str(out))], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(out) as z:
        assert b"cuda:0" in z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    with pytest.raises(Exception):  # loading it naively needs a GPU
        torch.load(out, weights_only=True)
    seg = Segmenter.from_file(out, device="cpu")
    torch.manual_seed(0)
    ref = UNet(1, 4, 3).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        expect = torch.sigmoid(ref(x)).numpy()
    assert np.abs(seg.net(x.numpy()) - expect).max() < 1e-5
