"""What training stores: the checkpoint and threshold chosen on the validation images, and nothing else."""
import numpy as np
import pytest

from dataset import load_split
from inference import Segmenter
from metrics import best_threshold, binary_metrics, pooled

TINY = ["--epochs", "3", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--batch-size", "2"]


def test_a_refit_on_all_images_keeps_the_last_epoch_and_takes_the_validated_runs_threshold(tiny_dataset, tmp_path,
                                                                                          capsys):
    import torch

    import train

    ref, out = tmp_path / "ref.pth", tmp_path / "all.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(ref)])
    ref_ck = torch.load(ref, weights_only=True)
    assert ref_ck["threshold"] != 0.5
    train.main(["--root", str(tiny_dataset), *TINY, "--val-count", "0", "--threshold-from", str(ref), "--out", str(out)])
    ck = torch.load(out, weights_only=True)
    assert ck["threshold"] == ref_ck["threshold"] and ck["info"]["best_epoch"] == 3 and ck["info"]["val_images"] == []
    assert sorted(ck["info"]["train_images"]) == sorted(ref_ck["info"]["train_images"] + ref_ck["info"]["val_images"])
    assert ck["info"]["threshold_from"] == {"file": "ref.pth", "val_images": ref_ck["info"]["val_images"],
                                            "val_f1": ref_ck["info"]["val_f1"], "val_auc": ref_ck["info"]["val_auc"]}
    train.main(["--root", str(tiny_dataset), *TINY, "--val-count", "0", "--out", str(tmp_path / "plain.pth")])
    assert torch.load(tmp_path / "plain.pth", weights_only=True)["threshold"] == 0.5  # no reference: 0.5
    for extra, message in ((["--threshold-from", str(ref)], "add --val-count 0"),  # still holding images out
                           (["--val-count", "0", "--width", "5", "--threshold-from", str(ref)], "not the same design"),
                           (["--val-count", "0", "--threshold-from", str(out)], "not the images the refit")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            train.main(["--root", str(tiny_dataset), *TINY, *extra, "--out", str(tmp_path / "x.pth")])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_folds_hold_out_disjoint_sets_that_cover_every_image_and_fold_0_is_the_usual_split():
    from cli import UserError
    from trainer import split_validation

    names = [f"{i:02d}_training" for i in range(1, 11)]
    held = [split_validation(names, 2, 0, fold)[1] for fold in range(5)]
    assert held[0] == split_validation(names, 2, 0)[1] == ["07_training", "08_training"]  # UNet_STARE.pth's split
    assert sorted(n for h in held for n in h) == names  # each image held out exactly once
    for fold, h in enumerate(held):
        train_names = split_validation(names, 2, 0, fold)[0]
        assert len(h) == 2 and sorted(train_names + h) == names
    with pytest.raises(UserError, match="only 5 folds"):
        split_validation(names, 2, 0, 5)


def test_a_refit_takes_the_threshold_chosen_on_the_folds_pooled_out_of_fold_maps(tiny_dataset, tmp_path, capsys):
    """--threshold-from F0 F1 F2 (train.py --fold 0, 1, 2): each fold segments the image it held out;
    the threshold is the F1 optimum of the three maps pooled, not any one fold's own threshold."""
    import torch

    import train

    folds = [tmp_path / f"f{k}.pth" for k in range(3)]
    for k, path in enumerate(folds):
        train.main(["--root", str(tiny_dataset), *TINY, "--fold", str(k), "--out", str(path)])
    cks = [torch.load(f, weights_only=True) for f in folds]
    assert sorted(n for ck in cks for n in ck["info"]["val_images"]) == ["01_training", "02_training", "03_training"]
    samples = {s.name: s for s in load_split(tiny_dataset, "DRIVE", "train")}
    maps = []
    for path, ck in zip(folds, cks):
        seg = Segmenter.from_file(path)
        maps += [(s.label, seg.probability(s.image, s.fov), s.fov) for s in (samples[n] for n in ck["info"]["val_images"])]
    y, p = pooled(maps)
    t, f1 = best_threshold(y, p)
    out = tmp_path / "all.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--val-count", "0", "--threshold-from", *map(str, folds),
                "--out", str(out)])
    ck = torch.load(out, weights_only=True)
    assert ck["threshold"] == pytest.approx(t, abs=1e-7)
    assert all(abs(t - c["threshold"]) > 1e-5 for c in cks)  # pooled: not any one fold's own threshold
    record = ck["info"]["threshold_from"]
    assert record["files"] == ["f0.pth", "f1.pth", "f2.pth"] and record["out_of_fold"]
    assert record["val_images"] == sorted(samples) and record["val_f1"] == pytest.approx(f1, abs=1e-4)
    # folds that leave an image out, or hold one out twice, are refused
    for refs in ((folds[0], folds[1]), (folds[0], folds[1], folds[1])):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            train.main(["--root", str(tiny_dataset), *TINY, "--val-count", "0", "--threshold-from", *map(str, refs),
                        "--out", str(tmp_path / "x.pth")])
        assert exc.value.code == 2 and "each held out once" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


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


def test_also_adds_another_cameras_images_at_the_first_datasets_scale(tiny_dataset, monkeypatch):
    import train
    from conftest import disc_image
    from imio import write_png
    from preprocess import fov_diameter

    for i in range(1, 4):  # a "camera" whose FOV is twice as wide (radius 100 against 50)
        img, lab, fov = disc_image(240, 280, 100, seed=10 + i)
        for sub, arr in (("image", img), ("label", lab), ("mask", fov)):
            write_png(tiny_dataset / "STARE" / "train" / sub / f"{i:02d}_training.png", arr)
    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look=None, threshold_from=None, init=None: seen.update(
        images=images, labels=labels, val=val, pre=pre, info=info))
    train.main(["--root", str(tiny_dataset), "--val-count", "1", "--also", "STARE"])
    drive = [s for s in load_split(tiny_dataset, "DRIVE", "train")]
    assert seen["info"]["trained_on"] == "DRIVE+STARE"
    assert len(seen["val"]) == 2 and sum(n.startswith("STARE/") for n in seen["info"]["val_images"]) == 1
    assert len(seen["images"]) == len(seen["labels"]) == 2 + 2
    assert [im.shape for im in seen["images"][:2]] == [drive[0].image.shape[:2]] * 2  # DRIVE: native size
    ratio = seen["pre"]["fov_diameter"] / fov_diameter(disc_image(240, 280, 100)[2])  # about 1/2
    for image, label in zip(seen["images"][2:], seen["labels"][2:]):  # STARE: rescaled to DRIVE's FOV scale
        assert image.shape == label.shape == (round(240 * ratio), round(280 * ratio)) and label.dtype == bool


def test_an_artery_vein_run_learns_vessels_alone_from_a_set_without_kinds(tmp_path, monkeypatch):
    """train.py --av --also STARE, STARE with vessel labels only: its vessels reach the loss as uncertain
    (vessel, no kind), its background as background, none of it is held out (validation scores the kinds),
    and the weights say so; the A/V set's own classes are untouched."""
    import train
    from av import UNCERTAIN
    from conftest import av_photo, write_av_set
    from imio import write_png

    root = write_av_set(tmp_path / "root", {"train": ("training", 3)})
    for i in range(1, 4):
        rgb, classes, fov = av_photo(seed=20 + i)
        for sub, arr in (("image", rgb), ("label", classes > 0), ("mask", fov)):
            write_png(root / "STARE" / "train" / sub / f"{i:02d}_training.png", arr)
    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look=None, threshold_from=None,
                        init=None: seen.update(labels=labels, val=val, info=info))
    train.main(["--root", str(root), "--dataset", "DRIVE-AV", "--av", "--val-count", "1", "--also", "STARE"])
    assert seen["info"]["vessels_only"] == ["STARE"] and seen["info"]["trained_on"] == "DRIVE-AV+STARE"
    assert len(seen["val"]) == 1 and not any(n.startswith("STARE/") for n in seen["info"]["val_images"])
    assert sum(n.startswith("STARE/") for n in seen["info"]["train_images"]) == 3
    own, stare = seen["labels"][:2], seen["labels"][2:]
    assert len(stare) == 3
    for label in own:  # DRIVE-AV keeps its arteries and veins
        assert {1, 2} <= set(np.unique(label))
    for i, label in enumerate(stare, 1):
        vessels = av_photo(seed=20 + i)[1] > 0
        assert set(np.unique(label)) == {0, UNCERTAIN}
        assert np.array_equal(label == UNCERTAIN, vessels)  # same size: av_photo's FOV is DRIVE-AV's


def test_split_seed_keeps_the_validation_images_of_another_seed(tiny_dataset, monkeypatch):
    """--seed N --split-seed 0 trains a second model on the images --seed 0 trained on (seed spread,
    ensembles): the held-out images follow --split-seed, and without it they follow --seed."""
    import train

    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look=None, threshold_from=None, init=None: seen.update(
        val=info["val_images"], seed=args.seed))
    root = ["--root", str(tiny_dataset), "--val-count", "1"]

    def held(*extra):
        train.main([*root, *extra])
        return seen["val"]

    base = held("--seed", "0")
    other = next(s for s in range(1, 50) if held("--seed", str(s)) != base)  # a seed whose split differs
    assert held("--seed", str(other), "--split-seed", "0") == base and seen["seed"] == other
    assert held("--seed", "0", "--split-seed", str(other)) != base


def test_channel_green_trains_on_the_green_plane_and_says_so_in_the_weights(tiny_dataset, monkeypatch):
    import train
    from preprocess import clahe, to_gray

    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look=None, threshold_from=None, init=None: seen.update(images=images, pre=pre))
    root = ["--root", str(tiny_dataset), "--val-count", "1"]
    samples = {s.name: s.image for s in load_split(tiny_dataset, "DRIVE", "train")}
    train.main(root)
    assert "channel" not in seen["pre"]  # gray: weights read like those from before the option
    gray = seen["images"]
    train.main([*root, "--channel", "green"])
    assert seen["pre"]["channel"] == "green"
    firsts = [im for im in samples.values() if any(np.array_equal(clahe(to_gray(im)), g) for g in gray)]
    assert len(firsts) == 2
    assert [g.tobytes() for g in seen["images"]] == [clahe(im[..., 1]).tobytes() for im in firsts]


def test_channel_green_refuses_gray_photographs_in_one_line(tiny_dataset, capsys):
    import train
    from imio import read_image, write_png

    first = sorted((tiny_dataset / "DRIVE" / "train" / "image").iterdir())[0]
    write_png(first, read_image(first)[..., 0])  # as RGB2gray.py leaves it
    with pytest.raises(SystemExit) as exc:
        train.main(["--root", str(tiny_dataset), *TINY, "--channel", "green", "--out", str(tiny_dataset / "m.pth")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code != 0 and "gray image" in err and "--channel green" in err and len(err.splitlines()) == 1


def test_augment_camera_hands_the_unenhanced_images_and_the_enhancement_to_the_loop(tiny_dataset, monkeypatch):
    import train
    from preprocess import clahe, to_gray
    from training_data import CameraLook

    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look=None, threshold_from=None, init=None: seen.update(
        images=images, look=look))
    root = ["--root", str(tiny_dataset), "--val-count", "1"]
    grays = [to_gray(s.image) for s in load_split(tiny_dataset, "DRIVE", "train")]
    train.main(root)
    assert seen["look"] is None and any(np.array_equal(seen["images"][0], clahe(g)) for g in grays)
    train.main([*root, "--augment", "camera"])
    assert isinstance(seen["look"], CameraLook)
    assert any(np.array_equal(seen["images"][0], g) for g in grays)  # not enhanced yet: the look comes first
    assert np.array_equal(seen["look"].enhance(grays[0]), clahe(grays[0]))


def test_train_patch_refuses_augment_camera(capsys):
    import train_patch

    with pytest.raises(SystemExit) as exc:
        train_patch.main(["--augment", "camera"])
    assert exc.value.code == 2 and "camera works with train.py only" in capsys.readouterr().err


def test_ema_keeps_the_moving_average_of_every_step_and_leaves_the_training_itself_unchanged(tiny_dataset, tmp_path):
    import torch

    import train

    def average_of(state):  # the averaged parameters (AveragedModel keeps them under module.)
        return {k[len("module."):]: v for k, v in state["ema"].items()
                if k.startswith("module.") and v.is_floating_point() and "running_" not in k}

    common = ["--root", str(tiny_dataset), *TINY, "--val-count", "0"]
    train.main([*common, "--out", str(tmp_path / "plain.pth")])
    train.main([*common, "--ema", "0.5", "--out", str(tmp_path / "ema.pth")])
    plain = torch.load(tmp_path / "plain.pth.resume.pth", weights_only=False)
    state = torch.load(tmp_path / "ema.pth.resume.pth", weights_only=False)
    for k, v in plain["model"].items():  # averaging only watches: the trained weights are the same
        assert torch.equal(v, state["model"][k]), k
    assert int(state["ema"]["n_averaged"]) == 3 * 2  # every optimizer step: 3 epochs x 2 batches of 3 images
    average = average_of(state)
    saved = torch.load(tmp_path / "ema.pth", weights_only=True)
    assert saved["info"]["ema"] == 0.5
    w = next(k for k in average if k.endswith("weight"))
    assert not torch.allclose(average[w], state["model"][w])  # an average, not the last weights
    for k, v in average.items():  # what is written is the average
        assert torch.equal(saved["state_dict"][k], v), k
    # its BatchNorm statistics are measured through the averaged weights, not copied from the trained network
    # (AveragedModel keeps its copy of them in step with the trained network's)
    for k in (k for k in saved["state_dict"] if k.endswith("running_var")):
        assert not torch.allclose(saved["state_dict"][k], state["model"][k]), k
        assert not torch.allclose(saved["state_dict"][k], state["ema"]["module." + k]), k
    # a resumed run starts from the stored average, not from a fresh copy of the trained weights
    train.main([*common, "--ema", "0.5", "--out", str(tmp_path / "ema.pth"), "--resume"])
    again = torch.load(tmp_path / "ema.pth", weights_only=True)
    assert all(torch.equal(again["state_dict"][k], v) for k, v in average.items())
    # with validation images, the average is what is validated and kept, and measuring its statistics
    # between epochs changes nothing in the training (validation after every epoch)
    val = ["--root", str(tiny_dataset), *TINY]
    train.main([*val, "--out", str(tmp_path / "v0.pth")])
    train.main([*val, "--ema", "0.5", "--out", str(tmp_path / "v.pth")])
    plain = torch.load(tmp_path / "v0.pth.resume.pth", weights_only=False)
    state = torch.load(tmp_path / "v.pth.resume.pth", weights_only=False)
    for k, v in plain["model"].items():
        assert torch.equal(v, state["model"][k]), k
    train.main([*val, "--val-every", "3", "--ema", "0.5", "--out", str(tmp_path / "last.pth")])  # one validation
    state = torch.load(tmp_path / "last.pth.resume.pth", weights_only=False)
    saved = torch.load(tmp_path / "last.pth", weights_only=True)
    assert saved["info"]["best_epoch"] == 3
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in average_of(state).items())
    assert not any(torch.allclose(v, state["model"][k]) for k, v in saved["state_dict"].items()
                   if k.endswith("running_var"))  # validated with its own statistics, not the trained network's


def test_topology_loss_terms_train_and_are_recorded_in_the_weights(tiny_dataset, tmp_path):
    import torch

    import train
    from unet import read_checkpoint

    common = ["--root", str(tiny_dataset), "--epochs", "1", *TINY[2:]]
    train.main([*common, "--out", str(tmp_path / "plain.pth")])
    train.main([*common, "--cldice-weight", "0.5", "--skeleton-weight", "1", "--out", str(tmp_path / "topo.pth")])
    info = read_checkpoint(tmp_path / "topo.pth")["info"]
    assert info["cldice_weight"] == 0.5 and info["skeleton_weight"] == 1.0
    assert "cldice_weight" not in read_checkpoint(tmp_path / "plain.pth")["info"]  # older weights stay comparable
    a, b = (read_checkpoint(tmp_path / n)["state_dict"] for n in ("plain.pth", "topo.pth"))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed, another loss: other weights


def test_init_fine_tunes_the_given_weights_at_their_size_input_and_scale(tiny_dataset, tmp_path, capsys, monkeypatch):
    """--init: training starts from the weights (not from a fresh network), keeps their architecture
    and preprocessing, brings another camera's photographs to their working scale, and with nothing
    to validate on keeps their threshold."""
    import torch

    import train
    from conftest import disc_image
    from imio import write_png

    ref, out = tmp_path / "ref.pth", tmp_path / "ft.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(ref)])
    ref_ck = torch.load(ref, weights_only=True)
    ref_ck["preprocess"]["edge_line"] = {"depth": 0.006, "length": 0.03}  # a setting stored with it, as UNet_AV's
    torch.save(ref_ck, ref)
    for i in range(1, 4):  # another "camera": the same kind of photograph, 1.5 times larger
        img, lab, fov = disc_image(h=180, w=210, radius=75, seed=i)
        for sub, arr in (("image", img), ("label", lab), ("mask", fov)):
            write_png(tiny_dataset / "BIG" / "train" / sub / f"{i:02d}_training.png", arr)
    common = ["--root", str(tiny_dataset), "--dataset", "BIG", "--init", str(ref), "--val-count", "1", "--val-every", "1"]
    train.main([*common, "--epochs", "1", "--lr", "1e-12", "--out", str(out)])
    ck = torch.load(out, weights_only=True)
    assert ck["arch"] == ref_ck["arch"] and ck["arch"]["width"] == 4  # its size, not the defaults (8, 4)
    assert ck["preprocess"] == ref_ck["preprocess"]  # its input and scale, not BIG's FOV diameter; its edge_line
    assert ck["info"]["fine_tuned_from"] == {"file": "ref.pth", "trained_on": "DRIVE"}
    convs = [k for k, v in ref_ck["state_dict"].items() if v.dim() == 4]
    assert convs and all(torch.allclose(ck["state_dict"][k], ref_ck["state_dict"][k], atol=1e-8) for k in convs)

    seen = {}
    monkeypatch.setattr(train, "fit", lambda args, images, labels, val, pre, info, look, threshold_from, init:
                        seen.update(shapes=[i.shape for i in images], threshold_from=threshold_from))
    train.main([*common, "--val-count", "0", "--out", str(tmp_path / "all.pth")])
    scale = ref_ck["preprocess"]["fov_diameter"] / 150  # BIG's FOV is 150 px across
    assert all(abs(h - 180 * scale) <= 2 and abs(w - 210 * scale) <= 2 for h, w in seen["shapes"])
    assert seen["threshold_from"][0] == ref_ck["threshold"]  # nothing validated: the start's threshold
    for extra, message in ((["--width", "3"], "its width is 4, not 3; leave --width out or make it wider"),
                           (["--av"], "a vessel model; --av fine-tunes an artery/vein model")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            train.main([*common, *extra, "--out", str(tmp_path / "x.pth")])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_init_with_a_larger_width_grows_the_weights_and_starts_where_they_were(tiny_dataset, tmp_path, capsys):
    """train.py --init W.pth --width 8 (W is width 4; 8 is also the parser's default, given here all the
    same): a width-8 network that, before it has learnt anything (lr 1e-12), computes what W computes; the
    weights record what they grew from. A narrower width given, even the default's, is refused."""
    import torch

    import train
    from unet import build_model

    ref, out = tmp_path / "ref.pth", tmp_path / "wide.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(ref)])
    train.main(["--root", str(tiny_dataset), "--init", str(ref), "--width", "8", "--epochs", "1", "--lr", "1e-12",
                "--val-count", "1", "--val-every", "1", "--batch-size", "2", "--out", str(out)])
    ck, ref_ck = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert ck["arch"] == {**ref_ck["arch"], "width": 8}
    assert ck["info"]["fine_tuned_from"]["grown_from_width"] == 4
    narrow, wide = build_model(ref_ck["arch"]), build_model(ck["arch"])
    narrow.load_state_dict(ref_ck["state_dict"]), wide.load_state_dict(ck["state_dict"])
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():  # in training mode: batch statistics (the epoch moved the running ones)
        assert torch.allclose(narrow.train()(x), wide.train()(x), atol=1e-4)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # 4 is the default depth, but given: refused, not ignored
        train.main(["--root", str(tiny_dataset), "--init", str(out), "--depth", "4", "--out", str(tmp_path / "x.pth")])
    assert exc.value.code == 2 and "its depth is 3, not 4; leave --depth out" in capsys.readouterr().err
