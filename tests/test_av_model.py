"""The artery/vein model (train.py --av) through every surface: its loss, the multi-output network
call (tiled, ONNX), the segment vote, predict.py --av, evaluate.py --av and measure.py on its colour
map. Synthetic photographs: a light red horizontal artery and a dark vertical vein crossing it."""
import csv
import json

import numpy as np
import pytest

import av
from conftest import write_av_set

TINY = ["--epochs", "2", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--batch-size", "2"]


@pytest.fixture
def av_dataset(tmp_path):
    """ROOT/DRIVE-AV/{train,test}/{image,label,label_av,mask}: 3 + 2 synthetic photographs."""
    return write_av_set(tmp_path / "root", {"train": ("training", 3), "test": ("test", 2)})


@pytest.fixture
def av_model(av_dataset, tmp_path):
    import train

    out = tmp_path / "av.pth"
    train.main(["--root", str(av_dataset), "--dataset", "DRIVE-AV", "--av", *TINY, "--out", str(out)])
    return out


def test_the_loss_learns_the_kind_only_on_artery_and_vein_pixels_and_the_vessels_on_all():
    import torch

    from losses import ArteryVeinLoss, CEDiceLoss

    target = torch.tensor([[[[0, 1, 2, 3]]]], dtype=torch.float32)
    logits = torch.zeros(1, 2, 1, 4, requires_grad=True)
    loss_fn = ArteryVeinLoss(CEDiceLoss())
    loss = loss_fn(logits, target)
    loss.backward()
    kind_grad = logits.grad[0, 1, 0]
    assert kind_grad[0] == 0 and kind_grad[3] == 0  # background and uncertain: no kind to learn
    assert kind_grad[1] < 0 < kind_grad[2]  # artery pushed up, vein down
    assert (logits.grad[0, 0, 0] != 0).all()  # the vessel map learns from every pixel
    vessel_only = CEDiceLoss()(logits[:, :1].detach(), (target > 0).float())
    # at logit 0 the kind's cross-entropy is log 2, averaged over the two pixels that have a kind
    assert loss.item() == pytest.approx(vessel_only.item() + np.log(2), rel=1e-5)


def test_kind_weight_scales_the_artery_vein_term_of_the_training_loss_and_needs_av(tiny_dataset, tmp_path, capsys):
    import argparse

    import torch

    import train
    from losses import CEDiceLoss
    from trainer import ArteryVeinTask

    args = argparse.Namespace(dice_weight=1.0, cldice_weight=0.0, skeleton_weight=0.0, kind_weight=3.0)
    target = torch.tensor([[[[0, 1, 2, 3]]]], dtype=torch.float32)
    logits = torch.zeros(1, 2, 1, 4)
    vessel_only = CEDiceLoss()(logits[:, :1], (target > 0).float())
    assert ArteryVeinTask().loss(args)(logits, target).item() == pytest.approx(vessel_only.item() + 3 * np.log(2), rel=1e-5)
    with pytest.raises(SystemExit):
        train.main(["--root", str(tiny_dataset), "--kind-weight", "2", *TINY, "--out", str(tmp_path / "x.pth")])
    err = capsys.readouterr().err.strip()
    assert "--kind-weight" in err and "--av" in err and "Traceback" not in err


def test_two_outputs_come_through_tiling_and_onnx_as_they_leave_the_network(tmp_path):
    import torch

    from inference import Segmenter, tiled_predict
    from onnx_model import export
    from unet import TorchNet, UNet, checkpoint_dict, save_checkpoint

    torch.manual_seed(0)
    model = UNet(3, 4, 3, out_channels=2).eval()
    net = TorchNet(model)
    img = np.random.default_rng(0).integers(0, 255, (70, 90, 3)).astype(np.uint8)
    whole = tiled_predict(net, img, window=1024)
    tiled = tiled_predict(net, img, window=48, margin=16)
    assert whole.shape == (2, 70, 90) and np.allclose(whole, tiled, atol=1e-5)
    pre = {"method": "whole", "enhance": "clahe", "fov_diameter": 80.0, "channel": "rgb", "classes": "av"}
    save_checkpoint(tmp_path / "m.pth", checkpoint_dict(model, pre, 0.5))
    export(tmp_path / "m.pth")
    a, b = (Segmenter.from_file(tmp_path / f"m.{x}") for x in ("pth", "onnx"))
    fov = np.ones((70, 90), bool)
    fov[:5] = False
    maps = a.maps(img, fov)
    assert maps.shape == (2, 70, 90) and (maps[:, :5] == 0).all()
    assert np.allclose(maps, b.maps(img, fov), atol=1e-4)
    assert np.array_equal(a.probability(img, fov), maps[0]) and a.classes == "av"


def test_each_segment_between_branch_points_takes_one_class_and_a_crossing_keeps_both():
    mask = np.zeros((60, 60), bool)
    mask[29:32, :] = True  # a horizontal artery
    mask[:, 29:32] = True  # crossed by a vertical vein
    p = np.zeros((60, 60))
    p[29:32, :] = 0.9
    p[:, 29:32] = 0.2
    p[29:32, 5:15] = 0.35  # a stretch of the artery the network doubts: outvoted by the rest of its segment
    pixel = av.assign(mask, p, vote=False)
    voted = av.assign(mask, p)
    assert (pixel[29:32, 5:15] == av.VEIN).all()
    assert (voted[29:32, :25] == av.ARTERY).all() and (voted[:25, 29:32] == av.VEIN).all()
    assert (voted[36:, 29:32] == av.VEIN).all() and (voted[29:32, 36:] == av.ARTERY).all()
    assert (voted[~mask] == av.BACKGROUND).all()


def test_a_large_photographs_segments_are_cut_at_the_working_scale_with_the_same_classes():
    # the crossing above, 4 times larger and not square: cut at a quarter of the size (as an
    # 8-megapixel photograph is, at the network's scale), every pixel off the crossing keeps the full-size vote's class
    mask = np.zeros((240, 320), bool)
    mask[116:128, :] = True
    mask[:, 156:168] = True
    p = np.zeros(mask.shape)
    p[116:128, :] = 0.9
    p[:, 156:168] = 0.2
    p[116:128, 20:60] = 0.35
    full, coarse = av.assign(mask, p), av.assign(mask, p, scale=0.25)
    assert (full[116:128, 20:60] == av.ARTERY).all() and (full[:100, 156:168] == av.VEIN).all()
    crossing = np.zeros(mask.shape, bool)
    crossing[116:128, 156:168] = True  # where the two meet either class is right
    assert np.array_equal(coarse[~crossing], full[~crossing])


def test_the_colour_map_reads_back_and_anything_else_is_refused():
    classes = np.array([[0, 1], [2, 3]], np.uint8)
    rgb = av.to_colour(classes)
    assert tuple(rgb[0, 1]) == (255, 0, 0) and tuple(rgb[1, 0]) == (0, 0, 255)
    assert np.array_equal(av.read_classes(rgb), classes) and np.array_equal(av.read_classes(classes), classes)
    rgb[0, 0] = (10, 200, 30)
    with pytest.raises(av.AVLabelError, match=r"pixel \(0, 0\) is \(10, 200, 30\)"):
        av.read_classes(rgb)


def test_train_av_records_colour_input_two_outputs_and_its_av_score(av_model):
    from unet import read_checkpoint

    ck = read_checkpoint(av_model)
    assert ck["preprocess"]["channel"] == "rgb" and ck["preprocess"]["classes"] == "av"
    assert ck["arch"]["in_channels"] == 3 and ck["arch"]["out_channels"] == 2
    assert 0 <= ck["info"]["val_av_f1"] <= 1 and ck["info"]["av"] is True
    log = list(csv.DictReader(open(str(av_model) + ".log.csv")))
    assert len(log) == 2 and all(r["val_av_f1"] and r["val_av_accuracy"] for r in log)


def test_train_av_without_artery_vein_labels_says_where_they_come_from(tiny_dataset, tmp_path, capsys):
    import train

    with pytest.raises(SystemExit):
        train.main(["--root", str(tiny_dataset), "--av", *TINY, "--out", str(tmp_path / "x.pth")])
    err = capsys.readouterr().err.strip()
    assert "label_av" in err and "prepare_data.py --dataset DRIVE-AV" in err and "Traceback" not in err


def test_predict_av_writes_the_colour_map_and_kind_probabilities_and_measure_reads_it(av_model, av_dataset, tmp_path):
    import measure
    import predict
    from imio import read_image, read_probability

    photos = av_dataset / "DRIVE-AV" / "test" / "image"
    out = tmp_path / "out"
    predict.main(["--av", "--weights", str(av_model.with_suffix(".onnx")), "--input", str(photos), "--output", str(out),
                  "--prob"])
    colour = read_image(out / "01_test_av.png")
    mask = read_image(out / "01_test.png") > 0
    classes = av.read_classes(colour)
    assert colour.shape == (96, 112, 3) and np.array_equal(classes > 0, mask)  # every vessel pixel has a kind
    p_v = read_probability(out / "01_test_prob.png")
    p_a, p_n = (read_probability(out / f"01_test_{k}_prob.png") for k in ("artery", "vein"))
    assert np.allclose(p_a + p_n, p_v, atol=2e-4)  # the kinds split the vessel probability
    measure.main(["--input", str(out), "--av", str(out), "--photos", str(photos), "--workers", "1",
                  "--output", str(tmp_path / "m.csv")])
    row = next(csv.DictReader(open(tmp_path / "m.csv")))
    expected = (classes == av.ARTERY).sum() / (read_image(av_dataset / "DRIVE-AV/test/mask/01_test.png") > 0).sum()
    assert row["status"] != "failed" and float(row["artery_vessel_area_density"]) == pytest.approx(expected, rel=0.05)


def test_predict_av_refuses_a_vessel_only_model_in_one_line(tiny_dataset, tmp_path, capsys):
    import predict
    import train

    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(tmp_path / "v.pth")])
    img = next((tiny_dataset / "DRIVE" / "test" / "image").iterdir())
    capsys.readouterr()
    with pytest.raises(SystemExit):
        predict.main(["--av", "--weights", str(tmp_path / "v.onnx"), "--input", str(img), "--output", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "vessel-only model" in err


def test_evaluate_av_scores_the_model_and_a_folder_of_its_maps_alike(av_model, av_dataset, tmp_path):
    import evaluate
    import predict

    common = ["--root", str(av_dataset), "--dataset", "DRIVE-AV", "--av"]
    evaluate.main([*common, "--weights", str(av_model), "--out", str(tmp_path / "e1")])
    report = json.loads((tmp_path / "e1" / "summary.json").read_text())
    s1 = report["av"]
    rows = list(csv.DictReader(open(tmp_path / "e1" / "av_per_image.csv")))
    assert len(rows) == 2 and set(evaluate.AV_ORDER) <= set(s1)
    for key, span in report["av_interval_95"].items():  # two photographs: an interval between the two alone
        alone = sorted(float(r[key]) for r in rows)
        assert span is None or alone[0] - 1e-3 <= span[0] <= s1[key] <= span[1] <= alone[1] + 1e-3
    # the same scores from the files predict.py --av writes (the FOV masks given, as evaluate uses)
    from dataset import load_split
    from inference import Segmenter
    from imio import write_png, write_probability

    seg = Segmenter.from_file(av_model)
    for s in load_split(av_dataset, "DRIVE-AV", "test"):
        prob, _, _, classes = seg.segment_av(s.image, s.fov)
        write_probability(tmp_path / "pred" / f"{s.name}_prob.png", prob)
        write_png(tmp_path / "pred" / f"{s.name}_av.png", av.to_colour(classes))
    evaluate.main([*common, "--pred", str(tmp_path / "pred"), "--threshold", str(seg.threshold),
                   "--out", str(tmp_path / "e2")])
    s2 = json.loads((tmp_path / "e2" / "summary.json").read_text())["av"]
    assert s2 == pytest.approx(s1, abs=1e-4)


def test_evaluate_av_refuses_a_vessel_only_model(tiny_dataset, tmp_path, capsys):
    import evaluate
    import train

    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(tmp_path / "v.pth")])
    with pytest.raises(SystemExit):
        evaluate.main(["--root", str(tiny_dataset), "--av", "--weights", str(tmp_path / "v.pth"),
                       "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert "vessel-only model" in err or "label_av" in err


def test_an_artery_vein_refit_takes_the_validated_runs_threshold(av_model, av_dataset, tmp_path):
    """train.py --av --val-count 0 --threshold-from: the same design (colour input, two outputs) is
    recognised, and the refit stores the reference's threshold."""
    import train
    from unet import read_checkpoint

    out = tmp_path / "all.pth"
    train.main(["--root", str(av_dataset), "--dataset", "DRIVE-AV", "--av", *TINY[:-6], "--val-count", "0",
                "--batch-size", "2", "--threshold-from", str(av_model), "--out", str(out)])
    assert read_checkpoint(out)["threshold"] == read_checkpoint(av_model)["threshold"]


def test_two_artery_vein_models_combine_into_one_chosen_by_its_artery_vein_score(av_model, av_dataset, tmp_path, capsys):
    """ensemble.py on two artery/vein models (colour input, two outputs): validated as the task is (the
    mean A/V F1 beside the vessel F1, on the labels the members held out), exported to ONNX with its
    three input channels, and its maps are the mean of the members' logits through the sigmoid."""
    import torch

    import ensemble
    import train
    from onnx_model import load_onnx
    from unet import load_model, read_checkpoint

    second = tmp_path / "av_seed1.pth"
    train.main(["--root", str(av_dataset), "--dataset", "DRIVE-AV", "--av", *TINY, "--seed", "1",
                "--split-seed", "0", "--out", str(second)])
    out = tmp_path / "pair.pth"
    capsys.readouterr()
    ensemble.main([str(av_model), str(second), "--root", str(av_dataset), "--out", str(out)])
    err = capsys.readouterr().err
    assert "ensemble of 2: val_f1" in err and "val_av_f1" in err
    ck = read_checkpoint(out)
    assert ck["arch"]["members"] == 2 and ck["arch"]["in_channels"] == 3 and ck["preprocess"]["classes"] == "av"
    assert 0 <= ck["info"]["val_av_f1"] <= 1 and ck["info"]["members"][1]["val_av_f1"] == read_checkpoint(second)["info"]["val_av_f1"]
    x = torch.rand(1, 3, 32, 32)
    members = [load_model(p)[0] for p in (av_model, second)]
    with torch.no_grad():
        expect = torch.sigmoid(torch.stack([m(x) for m in members]).mean(0)).numpy()
    got = load_onnx(out.with_suffix(".onnx"))[0](x.numpy())
    assert got.shape == (1, 2, 32, 32) and np.allclose(got, expect, atol=1e-4)
