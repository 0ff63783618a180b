"""Every flag a user can get wrong ends in a clear error before any work, and destroys nothing."""
import hashlib

import pytest

from conftest import REPO

# (script, arguments): each must exit with code 2 and an "error:" line, without a traceback
BAD = [
    ("train", ["--epochs", "0"]),
    ("train", ["--epochs", "-3"]),
    ("train", ["--epochs", "ten"]),
    ("train", ["--batch-size", "-1"]),
    ("train", ["--batch-size", "0"]),
    ("train", ["--lr", "0"]),
    ("train", ["--lr", "nan"]),
    ("train", ["--lr", "-0.1"]),
    ("train", ["--width", "0"]),
    ("train", ["--depth", "1"]),
    ("train", ["--depth", "40"]),
    ("train", ["--val-count", "-1"]),
    ("train", ["--val-count", "50"]),
    ("train", ["--val-every", "0"]),
    ("train", ["--threads", "-2"]),
    ("train", ["--seed", "-1"]),
    ("train", ["--split-seed", "x"]),
    ("train", ["--dice-weight", "-1"]),
    ("train", ["--enhance", "sharpen"]),
    ("train", ["--augment", "heavy"]),
    ("train", ["--out", "weights.txt"]),
    ("train", ["--out", "a_folder"]),
    ("train", ["--out", "blocker/m.pth"]),
    ("train", ["--resume"]),
    ("train", ["--dataset", "NOPE"]),
    ("train", ["--scale", "1.5", "0.8"]),
    ("train", ["--scale", "0", "1"]),
    ("train", ["--scale", "1"]),
    ("train", ["--detail", "0.5"]),
    ("train", ["--also", "NOPE"]),
    ("train_patch", ["--epochs", "0"]),
    ("train_patch", ["--batch-size", "-4"]),
    ("predict", ["--threshold", "1.5"]),
    ("predict", ["--threshold", "0"]),
    ("predict", ["--threshold", "inf"]),
    ("predict", ["--output", "blocker/out"]),
    ("predict", ["--input", "missing.png"]),
    ("predict", ["--input", "notes.txt"]),
    ("predict", ["--weights", "a_folder"]),
    ("predict", ["--weights", "notes.txt"]),
    ("predict", ["--detail", "0.9"]),
    ("predict_through_patch", ["--threshold", "-0.2"]),
    ("evaluate", ["--threshold", "2"]),
    ("evaluate", ["--limit", "-1"]),
    ("evaluate", ["--detail", "5"]),
    ("evaluate", ["--split", "validation"]),
    ("evaluate", ["--out", "blocker/ev"]),
    ("evaluate", ["--pred", "missing_folder"]),
    ("evaluate", ["--weights", "missing.pth"]),
    ("split_training_set", ["--size", "0"]),
    ("split_training_set", ["--patch-size", "-5"]),
    ("split_training_set", ["--count", "0"]),
    ("split_training_set", ["--size", "128", "--patch-size", "256"]),
    ("split_testing_set", ["--count", "-1"]),
    ("equalize_patch", ["--dataset", "NOPE"]),
    ("RGB2gray", ["--dataset", "NOPE"]),
    ("prepare_data", ["--dataset", "NOPE"]),
    ("prepare_data", ["--source", "missing"]),
    ("prepare_data", ["--dataset", "FIVES", "--source", "a_folder"]),
    ("prepare_data", ["--root", "blocker/x"]),
    ("export_onnx", ["missing.pth"]),
    ("export_onnx", ["notes.txt"]),
    ("export_onnx", ["UNet.pth", "UNet.pth", "--out", "x.onnx"]),
]


def digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tiny_dataset, monkeypatch):
    """A project folder with data, the shipped weights, a sample image and some traps."""
    root = tiny_dataset
    for name in ("UNet.pth", "UNet.onnx", "UNet_patch_equalized_patch_256_50.pth", "UNet_patch_equalized_patch_256_50.onnx"):
        (root / name).write_bytes((REPO / name).read_bytes())
    (root / "predict").mkdir()
    (root / "predict" / "img.png").write_bytes((REPO / "predict" / "img.png").read_bytes())
    (root / "notes.txt").write_text("not an image")
    (root / "a_folder").mkdir()
    (root / "blocker").write_text("a file where a folder would have to be")
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("script,argv", BAD, ids=[f"{s} {' '.join(a)}" for s, a in BAD])
def test_bad_argument_is_a_clear_error_and_changes_nothing(workdir, script, argv, capsys):
    import importlib

    before = digest(workdir)
    main = importlib.import_module(script).main
    if script == "train":  # settings under which a run would really start: only the bad flag can stop it
        argv = ["--val-count", "1", "--epochs", "1", "--width", "4", "--depth", "3", *argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and len(last) < 400, err
    after = digest(workdir)
    assert after == before, "a refused command must not change, add or remove any file"
