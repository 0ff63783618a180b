"""Interrupted runs lose nothing: kill -9 / Ctrl-C during training and in-place scripts."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from imio import png_text, read_image, write_png
from preprocess import equalize
from conftest import REPO

TINY = ["--epochs", "4", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--batch-size", "2"]


def start(args, cwd):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(cond, proc, timeout=120):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def log_rows(path):
    return path.read_text().count("\n") - 1 if path.is_file() else 0


def test_resume_after_kill_9_gives_the_same_model(tiny_dataset):
    root = tiny_dataset
    ref = subprocess.run([sys.executable, REPO / "train.py", *TINY, "--out", "ref.pth"], cwd=root,
                         capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    proc = start([REPO / "train.py", *TINY, "--out", "run.pth"], root)
    wait_for(lambda: log_rows(root / "run.pth.log.csv") >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= log_rows(root / "run.pth.log.csv") < 4  # really interrupted before the end
    r = subprocess.run([sys.executable, REPO / "train.py", *TINY, "--out", "run.pth", "--resume"], cwd=root,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming after epoch" in r.stderr

    a = torch.load(root / "ref.pth", weights_only=True)
    b = torch.load(root / "run.pth", weights_only=True)
    assert a["threshold"] == pytest.approx(b["threshold"], abs=1e-6)
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-5), k
    ref_log = (root / "ref.pth.log.csv").read_text().splitlines()
    run_log = (root / "run.pth.log.csv").read_text().splitlines()
    strip = lambda rows: [r.rsplit(",", 1)[0] for r in rows]  # drop the seconds column
    assert strip(ref_log) == strip(run_log)


def test_ctrl_c_saves_a_resumable_state(tiny_dataset):
    root = tiny_dataset
    proc = start([REPO / "train.py", *TINY, "--epochs", "50", "--out", "c.pth"], root)
    wait_for(lambda: log_rows(root / "c.pth.log.csv") >= 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping after this step" in err and "--resume" in err and "Traceback" not in err
    assert (root / "c.pth.resume.pth").is_file() and (root / "c.pth").is_file()


def test_first_ctrl_c_waits_for_the_step_second_stops_at_once():
    import os

    from trainer import StopAfterStep

    before = signal.getsignal(signal.SIGINT)
    with StopAfterStep() as ctrl_c:
        ctrl_c.check()  # nothing pressed: carries on
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here and must not raise
        assert ctrl_c.pressed
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before  # Python's own handler is back


def test_resume_with_other_settings_is_refused(tiny_dataset):
    root = tiny_dataset
    r = subprocess.run([sys.executable, REPO / "train.py", *TINY, "--epochs", "1", "--out", "s.pth"], cwd=root,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, REPO / "train.py", *TINY, "--epochs", "1", "--lr", "0.1", "--out", "s.pth",
                        "--resume"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 2 and "different settings" in r.stderr and "Traceback" not in r.stderr


def test_kill_during_equalize_leaves_every_file_old_or_new(tmp_path):
    folder = tmp_path / "DRIVE_patch" / "train" / "image"
    rng = np.random.default_rng(0)
    originals = {}
    for k in range(1, 301):
        arr = rng.integers(90, 140, (64, 64)).astype(np.uint8)
        originals[f"{k}_training.png"] = arr
        write_png(folder / f"{k}_training.png", arr)
    proc = start([REPO / "equalize_patch.py"], tmp_path)
    wait_for(lambda: any(png_text(folder / n).get("equalized") for n in ("1_training.png", "2_training.png")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = []
    for name, arr in originals.items():
        got = read_image(folder / name)  # never truncated: every file still reads
        if np.array_equal(got, arr):
            states.append("old")
        else:
            assert np.array_equal(got, equalize(arr)), name
            states.append("new")
    assert "old" in states and "new" in states  # the kill really happened half-way
    r = subprocess.run([sys.executable, REPO / "equalize_patch.py"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "already equalized" in r.stdout
    for name, arr in originals.items():  # each equalized exactly once
        assert np.array_equal(read_image(folder / name), equalize(arr))
