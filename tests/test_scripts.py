"""End-to-end runs of every script, in order, on a few real DRIVE images (tiny model, 1 epoch)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from imio import read_image
from conftest import REPO


def mini_drive(src, dst, train=("21", "22", "23"), test=("01", "02")):
    """A copy of the official DRIVE layout holding only a few images (symlinks)."""
    for sub, nums, tag in (("training", train, "training"), ("test", test, "test")):
        for n in nums:
            for folder, name in (("images", f"{n}_{tag}.tif"), ("1st_manual", f"{n}_manual1.gif"),
                                 ("mask", f"{n}_{tag}_mask.gif"), ("2nd_manual", f"{n}_manual2.gif")):
                s = src / sub / folder / name
                if s.exists():
                    (dst / sub / folder).mkdir(parents=True, exist_ok=True)
                    os.symlink(s, dst / sub / folder / name)
    return dst


def run(script, *args, cwd):
    """Run a script in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True)


def test_whole_pipeline_on_real_drive_images(drive_src, tmp_path, monkeypatch, capsys):
    import RGB2gray, equalize_patch, evaluate, predict, predict_through_patch, prepare_data
    import split_testing_set, split_training_set, train, train_patch

    src = mini_drive(drive_src, tmp_path / "official")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    prepare_data.main(["--dataset", "DRIVE", "--source", str(src)])
    d = work / "DRIVE"
    assert sorted(p.name for p in (d / "train" / "image").iterdir()) == ["01_training.png", "02_training.png", "03_training.png"]
    assert sorted(p.name for p in (d / "test" / "label2").iterdir()) == ["01_testing.png", "02_testing.png"]
    assert read_image(d / "train" / "image" / "01_training.png").shape == (584, 565, 3)
    for sub in ("label", "mask"):
        assert set(np.unique(read_image(d / "test" / sub / "01_testing.png"))) == {0, 255}

    RGB2gray.main([])
    assert read_image(d / "train" / "image" / "01_training.png").shape == (584, 565)
    before = (d / "test" / "image" / "02_testing.png").read_bytes()
    RGB2gray.main([])  # idempotent
    assert (d / "test" / "image" / "02_testing.png").read_bytes() == before

    split_training_set.main(["--count", "3"])
    split_testing_set.main(["--count", "2"])
    pt = work / "DRIVE_patch"
    assert sorted(p.name for p in (pt / "train" / "image").iterdir()) == sorted(f"{k}_training.png" for k in range(1, 10))
    assert sorted(p.name for p in (pt / "test" / "label").iterdir()) == sorted(f"{k}_testing.png" for k in range(1, 5))
    assert read_image(pt / "train" / "image" / "1_training.png").shape == (256, 256)

    raw = read_image(pt / "train" / "image" / "1_training.png")
    equalize_patch.main([])
    eq = read_image(pt / "train" / "image" / "1_training.png")
    assert not np.array_equal(raw, eq) and eq.max() == 255
    capsys.readouterr()
    equalize_patch.main([])  # second run: nothing equalized twice
    assert "equalized 0 patches; 13 were already equalized" in capsys.readouterr().out
    assert np.array_equal(read_image(pt / "train" / "image" / "1_training.png"), eq)

    tiny = ["--epochs", "1", "--width", "4", "--depth", "3", "--val-count", "1"]
    train.main(tiny)
    assert (work / "UNet.pth").is_file() and (work / "UNet.pth.log.csv").read_text().count("\n") == 2
    train_patch.main(tiny + ["--batch-size", "4"])
    patch_weights = work / "UNet_patch_equalized_patch_256_3.pth"
    assert patch_weights.is_file()

    (work / "predict").mkdir()
    shutil.copy(d / "test" / "image" / "01_testing.png", work / "predict" / "img.png")
    predict.main([])
    res = read_image(work / "result" / "res.png")
    assert res.shape == (584, 565) and set(np.unique(res)) <= {0, 255}

    predict_through_patch.main(["--weights", patch_weights.name, "--input", "DRIVE/test/image", "--output", "out", "--prob"])
    for name in ("01_testing", "02_testing"):
        assert read_image(work / "out" / f"{name}.png").shape == (584, 565)
        assert read_image(work / "out" / f"{name}_prob.png").shape == (584, 565)

    evaluate.main(["--weights", "UNet.pth"])
    summary = json.loads((work / "eval" / "DRIVE_UNet" / "summary.json").read_text())
    assert summary["images"] == 2 and 0 <= summary["metrics"]["f1"] <= 1
    assert summary["second_observer"]["f1"] > 0.7  # the human reference row is really computed
    for f in ("per_image.csv", "roc.png", "pr.png"):
        assert (work / "eval" / "DRIVE_UNet" / f).is_file()
    # topology beside the pixels, for the model and the second observer, per image and pooled
    assert 0 <= summary["metrics"]["cldice"] <= 1 and 0.6 < summary["second_observer"]["cldice"] < 1
    assert -0.5 < summary["second_observer"]["length_error"] < 0.5
    with open(work / "eval" / "DRIVE_UNet" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["rater"]) for r in rows] == [(n, rater) for rater in ("model", "second observer")
                                                        for n in ("01_testing", "02_testing")]
    assert all(float(r["cl_recall"]) > 0.5 for r in rows if r["rater"] == "second observer")
    assert rows[2]["auc_roc"] == "" and float(rows[2]["f1"]) > 0.7
    # each image's confusion counts: pooled again they give the summary's F1; the interval lies round it
    tp, fp, fn, tn = (sum(int(r[k]) for r in rows[:2]) for k in ("tp", "fp", "fn", "tn"))
    assert tp + fn > 0 and 2 * tp / (2 * tp + fp + fn) == pytest.approx(summary["metrics"]["f1"], abs=1e-4)
    low, high = summary["interval_95"]["f1"]
    f1s = sorted(float(r["f1"]) for r in rows[:2])
    assert f1s[0] - 1e-4 <= low <= summary["metrics"]["f1"] <= high <= f1s[1] + 1e-4

    # --split val: the image the weights held out, named in the .pth, and nothing else
    from unet import read_checkpoint

    held = read_checkpoint(work / "UNet.pth")["info"]["val_images"]
    evaluate.main(["--weights", "UNet.pth", "--split", "val", "--out", "eval/val"])
    val = json.loads((work / "eval" / "val" / "summary.json").read_text())
    assert val["split"] == "val" and val["images"] == 1 and val["second_observer"] is None
    assert (work / "eval" / "val" / "per_image.csv").read_text().splitlines()[1].startswith(held[0] + ",model,")
    # ... and the same image from the .onnx train.py exported (its metadata names it too)
    evaluate.main(["--weights", "UNet.onnx", "--split", "val", "--out", "eval/val_onnx"])
    assert json.loads((work / "eval" / "val_onnx" / "summary.json").read_text())["images"] == 1
    assert (work / "eval" / "val_onnx" / "per_image.csv").read_text().splitlines()[1].startswith(held[0] + ",model,")

    # --pred scores maps made elsewhere with the same code: the patch maps just written
    evaluate.main(["--pred", "out", "--out", "eval/ext"])
    assert json.loads((work / "eval" / "ext" / "summary.json").read_text())["method"] == "external"


def test_prepare_stare_split_and_masks(stare_src, tmp_path, monkeypatch):
    import prepare_data

    monkeypatch.chdir(tmp_path)
    prepare_data.main(["--dataset", "STARE", "--source", str(stare_src)])
    rows = (tmp_path / "STARE" / "sources.csv").read_text().splitlines()[1:]
    train = [r.split(",")[2] for r in rows if r.startswith("train")]
    test = [r.split(",")[2] for r in rows if r.startswith("test")]
    assert train[0] == "im0001.ppm.gz" and train[-1] == "im0139.ppm.gz" and len(train) == 10
    assert test[0] == "im0162.ppm.gz" and test[-1] == "im0324.ppm.gz" and len(test) == 10
    for name in ("01_testing", "10_testing"):
        mask = read_image(tmp_path / "STARE" / "test" / "mask" / f"{name}.png") > 0
        assert 0.6 < mask.mean() < 0.85  # a disc, not the whole frame
        assert (tmp_path / "STARE" / "test" / "label2" / f"{name}.png").is_file()


def test_prepare_fives_both_layouts(tmp_path, monkeypatch):
    """FIVES photographs: image/ + label/ all go to the test split; the official train/ and test/
    folders keep their split; FOVs are estimated; an image without its label is refused."""
    import prepare_data
    from cli import UserError
    from conftest import disc_image
    from imio import write_png

    mini, full = tmp_path / "mini", tmp_path / "full"
    for i, (folder, image_dir, label_dir) in enumerate([
            (mini, "image", "label"), (mini, "image", "label"),
            (full, "train/Original", "train/Ground truth"), (full, "test/Original", "test/Ground truth")]):
        img, label, _ = disc_image(90, 100, 40, seed=i)
        write_png(folder / image_dir / f"{i}_A.png", img)
        write_png(folder / label_dir / f"{i}_A.png", label)
    monkeypatch.chdir(tmp_path)
    prepare_data.main(["--dataset", "FIVES", "--source", "mini", "--root", "a"])
    assert sorted(p.name for p in (tmp_path / "a" / "FIVES" / "test" / "image").iterdir()) == ["0_A.png", "1_A.png"]
    assert not (tmp_path / "a" / "FIVES" / "train").exists()
    mask = read_image(tmp_path / "a" / "FIVES" / "test" / "mask" / "0_A.png") > 0
    assert 0.3 < mask.mean() < 0.7  # the estimated disc
    prepare_data.main(["--dataset", "FIVES", "--source", "full", "--root", "b"])
    assert [p.name for p in (tmp_path / "b" / "FIVES" / "train" / "label").iterdir()] == ["2_A.png"]
    assert [p.name for p in (tmp_path / "b" / "FIVES" / "test" / "label").iterdir()] == ["3_A.png"]
    (mini / "label" / "1_A.png").unlink()
    with pytest.raises(UserError, match="1_A.png has no label"):
        prepare_data.fives_items(mini)


def test_prepare_lesav_makes_vessel_labels_of_artery_vein_labels(tmp_path, monkeypatch):
    """LES-AV's layout: every labelled pixel (artery 1, vein 2, uncertain 3) is vessel; the official
    FOV masks; a label with another value is refused in one line."""
    import prepare_data
    from cli import UserError
    from conftest import disc_image
    from imio import write_png

    src = tmp_path / "release" / "LES-AV"
    for split, n in (("training", "1"), ("test", "2")):
        img, label, fov = disc_image(90, 100, 40, seed=int(n))
        av = np.zeros(label.shape, np.uint8)
        av[label] = 1
        av[:, :50][label[:, :50]] = 2
        av[45, 30] = 3
        write_png(src / split / "images" / f"{n}.png", img)
        write_png(src / split / "1st_manual" / f"{n}.png", av)
        write_png(src / split / "mask" / f"{n}_mask.gif".replace(".gif", ".png"), fov)
        (src / split / "mask" / f"{n}_mask.png").rename(src / split / "mask" / f"{n}_mask.gif")
    monkeypatch.chdir(tmp_path)
    prepare_data.main(["--dataset", "LES-AV", "--source", str(src)])
    lab = read_image(tmp_path / "LES-AV" / "test" / "label" / "2.png") > 0
    assert np.array_equal(lab, disc_image(90, 100, 40, seed=2)[1])  # arteries, veins and uncertain alike
    assert (tmp_path / "LES-AV" / "train" / "mask" / "1.png").is_file()
    kept = read_image(tmp_path / "LES-AV" / "test" / "label_av" / "2.png")  # the classes, as they were
    assert np.array_equal(kept, read_image(src / "test" / "1st_manual" / "2.png"))
    assert set(np.unique(kept)) == {0, 1, 2, 3}
    bad = read_image(src / "test" / "1st_manual" / "2.png").copy()
    bad[0, 0] = 255  # a 0/255 vessel mask is not an A/V label
    write_png(src / "test" / "1st_manual" / "2.png", bad)
    with pytest.raises(UserError, match=r"2.png: not an artery/vein label .* found \[255\]"):
        prepare_data.read_av_vessels(src / "test" / "1st_manual" / "2.png")
    with pytest.raises(SystemExit):  # the script: that one line, and the prepared folder left as it was
        prepare_data.main(["--dataset", "LES-AV", "--source", str(src)])
    assert np.array_equal(read_image(tmp_path / "LES-AV" / "test" / "label" / "2.png") > 0, lab)


@pytest.mark.parametrize("dataset,check,count,shape", [("LES-AV", "AV/LES-AV", 11, (1444, 1620)),
                                                       ("DRIVE-AV", "AV/DRIVE_AV", 20, (584, 565))])
def test_prepare_real_artery_vein_releases(dataset, check, count, shape, tmp_path, monkeypatch):
    import prepare_data
    from conftest import need

    src = need(check)
    monkeypatch.chdir(tmp_path)
    prepare_data.main(["--dataset", dataset, "--source", str(src)])
    labels = sorted((tmp_path / dataset / "test" / "label").iterdir())
    assert len(labels) == count and len(list((tmp_path / dataset / "train" / "label").iterdir())) == count
    lab = read_image(labels[0]) > 0
    assert lab.shape == shape and 0.04 < lab.mean() < 0.15
    classes = read_image(tmp_path / dataset / "test" / "label_av" / labels[0].name)
    assert np.array_equal(classes > 0, lab)
    artery, vein = (classes == 1).sum(), (classes == 2).sum()
    assert 0.5 < artery / vein < 1.2  # veins are the wider: fewer artery pixels than vein pixels, not far fewer


def test_user_errors_are_one_line_without_traceback(tmp_path):
    r = run("predict.py", "--weights", "missing.pth", "--input", str(REPO / "predict" / "img.png"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "missing.pth not found" in r.stderr
    assert "python train.py" in r.stderr
    r = run("predict.py", cwd=tmp_path)  # no predict/img.png here
    assert r.returncode == 2 and "Traceback" not in r.stderr and "predict/img.png not found" in r.stderr
    r = run("train.py", "--root", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "DRIVE/train/image" in r.stderr


def test_bad_inputs_end_in_one_clear_line(tmp_path):
    good = (REPO / "predict" / "img.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    r = run("predict.py", "--input", "cut.png", "--weights", str(REPO / "UNet.pth"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cut.png: not a readable image" in r.stderr
    (tmp_path / "DRIVE" / "train" / "image").mkdir(parents=True)
    (tmp_path / "DRIVE" / "train" / "label").mkdir(parents=True)
    r = run("train.py", cwd=tmp_path)
    assert r.returncode == 2 and "no images in" in r.stderr and "Traceback" not in r.stderr
    r = run("split_training_set.py", "--size", "128", "--patch-size", "256", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (tmp_path / "bad.pth").write_bytes(b"\x00" * 100)
    r = run("predict.py", "--weights", "bad.pth", "--input", str(REPO / "predict" / "img.png"), cwd=tmp_path)
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_the_shipped_weights_are_found_from_another_folder_and_a_users_own_come_first(tmp_path, monkeypatch):
    """predict.py and measure.py run from a folder without weights use the shipped model beside the scripts (the
    masks equal those of --weights REPO/UNet.onnx); a UNet.onnx in the current folder is the user's and is used."""
    import predict
    from imio import read_mask

    photo = str(REPO / "predict" / "img.png")
    monkeypatch.chdir(tmp_path)
    predict.main(["--input", photo, "--output", "default"])
    predict.main(["--input", photo, "--output", "explicit", "--weights", str(REPO / "UNet.onnx")])
    default = read_mask(tmp_path / "default" / "img.png")
    assert np.array_equal(default, read_mask(tmp_path / "explicit" / "img.png")) and default.mean() > 0.05
    import measure

    measure.main(["--input", photo, "--output", str(tmp_path / "m" / "measurements.csv"), "--workers", "1"])
    assert (tmp_path / "m" / "measurements.csv").read_text().count("\n") == 2
    shutil.copy(REPO / "UNet_fast.onnx", tmp_path / "UNet.onnx")  # the user's own model, by the default's name
    predict.main(["--input", photo, "--output", "own"])
    predict.main(["--input", photo, "--output", "fast", "--weights", str(REPO / "UNet_fast.onnx")])
    own = read_mask(tmp_path / "own" / "img.png")
    assert np.array_equal(own, read_mask(tmp_path / "fast" / "img.png")) and not np.array_equal(own, default)
