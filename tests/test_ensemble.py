"""ensemble.py and unet.Ensemble: members trained on the same images, logits averaged, threshold chosen again."""
import shutil

import numpy as np
import pytest

from dataset import load_split
from inference import Segmenter
from metrics import best_threshold, pooled

TINY = ["--epochs", "2", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--threads", "1"]


def test_ensemble_output_is_the_mean_of_its_members_logits():
    import torch

    from unet import build_model

    torch.manual_seed(0)
    ens = build_model({"in_channels": 1, "width": 4, "depth": 3, "members": 3}).eval()
    assert ens.arch["members"] == 3 and ens.align == 4
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        outs = [m(x) for m in ens.members]
        assert not torch.allclose(outs[0], outs[1])  # members are distinct networks
        assert torch.allclose(ens(x), sum(outs) / 3, atol=1e-6)
    mix = build_model({"in_channels": 1, "width": 4, "depth": 3, "members": 3, "inputs": [1, 0, 1]}).eval()
    assert mix.in_channels == 2 and mix.arch["inputs"] == [1, 0, 1]
    x2 = torch.rand(1, 2, 16, 16)
    with torch.no_grad():  # member i reads channel inputs[i] only
        want = (mix.members[0](x2[:, 1:]) + mix.members[1](x2[:, :1]) + mix.members[2](x2[:, 1:])) / 3
        assert torch.allclose(mix(x2), want, atol=1e-6)
    with pytest.raises(ValueError):
        build_model({"in_channels": 1, "width": 4, "depth": 3, "members": 2, "inputs": [0]})


@pytest.fixture
def members(tiny_dataset, tmp_path):
    import train

    paths = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}.pth"
        train.main(["--root", str(tiny_dataset), *TINY, "--seed", str(seed), "--split-seed", "0", "--out", str(out)])
        paths.append(out)
    return paths


def test_ensemble_threshold_is_the_f1_optimum_of_the_averaged_maps(tiny_dataset, tmp_path, members):
    import torch

    import ensemble

    out = tmp_path / "ens.pth"
    ensemble.main([*map(str, members), "--root", str(tiny_dataset), "--out", str(out)])
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["arch"]["members"] == 2 and [m["seed"] for m in ckpt["info"]["members"]] == [0, 1]
    val = [s for s in load_split(tiny_dataset, "DRIVE", "train") if s.name in ckpt["info"]["val_images"]]
    seg = Segmenter.from_file(out)
    singles = [Segmenter.from_file(m) for m in members]
    for s in val:  # the stored network is the average of the members' logits
        logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))  # noqa: E731
        want = 1 / (1 + np.exp(-(logit(singles[0].probability(s.image)) + logit(singles[1].probability(s.image))) / 2))
        assert np.allclose(seg.probability(s.image), want, atol=2e-3)
    t, f1 = best_threshold(*pooled([(s.label, seg.probability(s.image, s.fov), s.fov) for s in val]))
    assert ckpt["threshold"] == pytest.approx(t, abs=1e-4) and ckpt["info"]["val_f1"] == pytest.approx(f1, abs=1e-4)
    onnx = Segmenter.from_file(tmp_path / "ens.onnx")  # exported beside, same maps
    assert np.allclose(onnx.probability(val[0].image), seg.probability(val[0].image), atol=1e-4)


def test_members_trained_on_other_images_are_refused(tiny_dataset, tmp_path, members, capsys):
    import ensemble
    import train

    other = tmp_path / "other.pth"
    for seed in range(1, 50):  # a seed whose validation split differs from --split-seed 0's
        train.main(["--root", str(tiny_dataset), *TINY, "--epochs", "1", "--seed", str(seed), "--out", str(other)])
        import torch

        if torch.load(other, weights_only=True)["info"]["val_images"] != \
                torch.load(members[0], weights_only=True)["info"]["val_images"]:
            break
    for argv, message in (([str(members[0]), str(other), "--root", str(tiny_dataset)], "train_images differ"),
                          ([str(members[0])], "needs two or more")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            ensemble.main([*argv, "--out", str(tmp_path / "e.pth")])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "e.pth").exists()


def test_members_may_see_different_channels_each_gets_its_own(tiny_dataset, tmp_path, members, capsys):
    """A gray member and a green one: the ensemble's input has one channel per kind, each member
    reads its own, and the maps equal the average of the members' own maps (torch and ONNX)."""
    import torch

    import ensemble
    import train

    green = tmp_path / "green.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--seed", "1", "--split-seed", "0", "--channel", "green",
                "--out", str(green)])
    out = tmp_path / "mix.pth"
    ensemble.main([str(members[0]), str(green), str(members[1]), "--root", str(tiny_dataset), "--out", str(out)])
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["preprocess"]["channel"] == ["gray", "green"] and ckpt["arch"]["inputs"] == [0, 1, 0]
    seg, onnx = Segmenter.from_file(out), Segmenter.from_file(tmp_path / "mix.onnx")
    singles = [Segmenter.from_file(m) for m in (members[0], green, members[1])]
    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))  # noqa: E731
    for s in load_split(tiny_dataset, "DRIVE", "train"):
        image = s.image.copy()
        image[..., 1] = 255 - image[..., 1]  # green unlike gray: a member fed the wrong channel shows
        want = 1 / (1 + np.exp(-sum(logit(m.probability(image, s.fov)) for m in singles) / 3))
        got = seg.probability(image, s.fov)
        assert np.allclose(got, want, atol=2e-3)
        assert np.allclose(onnx.probability(image, s.fov), got, atol=1e-4)
    # only the channel may differ, and a green member needs colour validation images
    other = tmp_path / "eq.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--split-seed", "0", "--enhance", "equalize", "--out", str(other)])
    from imio import read_image, write_png

    for p in (tiny_dataset / "DRIVE" / "train" / "image").iterdir():
        write_png(p, read_image(p)[..., 0])
    for argv, message in (([members[0], other], "only the channel may differ"), ([members[0], green], "gray image")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            ensemble.main([*map(str, argv), "--root", str(tiny_dataset), "--out", str(tmp_path / "e.pth")])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    # gray photographs: a benchmark with such a model refuses them; prediction warns and goes on
    import evaluate
    import predict

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--root", str(tiny_dataset), "--split", "train", "--weights", str(out), "--out", str(tmp_path / "ev")])
    assert exc.value.code == 2 and "reads the green channel" in capsys.readouterr().err
    evaluate.main(["--root", str(tiny_dataset), "--split", "train", "--weights", str(members[0]), "--out", str(tmp_path / "ev")])
    photo = next((tiny_dataset / "DRIVE" / "train" / "image").iterdir())
    for weights, warned in ((out, True), (members[0], False)):
        capsys.readouterr()
        predict.main(["--input", str(photo), "--weights", str(weights), "--output", str(tmp_path / "pr")])
        assert ("is a gray image" in capsys.readouterr().err) == warned
        assert (tmp_path / "pr" / photo.name).is_file()


def test_a_refit_takes_the_threshold_of_the_ensemble_it_refits(tiny_dataset, tmp_path, members, capsys):
    """Members trained on all images (--val-count 0) leave nothing to choose a threshold on: it comes
    from the validated ensemble of the same design whose training + validation images they saw."""
    import torch

    import ensemble
    import train

    ref = tmp_path / "ref.pth"
    ensemble.main([*map(str, members), "--root", str(tiny_dataset), "--out", str(ref)])
    ref_ck = torch.load(ref, weights_only=True)
    refit = []
    for seed in (0, 1):
        out = tmp_path / f"all{seed}.pth"
        train.main(["--root", str(tiny_dataset), *TINY, "--val-count", "0", "--seed", str(seed), "--out", str(out)])
        refit.append(str(out))
    out = tmp_path / "refit.pth"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # no validation images and no reference
        ensemble.main([*refit, "--root", str(tiny_dataset), "--out", str(out)])
    assert exc.value.code == 2 and "--threshold-from" in capsys.readouterr().err
    ensemble.main([*refit, "--threshold-from", str(ref), "--out", str(out)])
    ck = torch.load(out, weights_only=True)
    assert ck["threshold"] == ref_ck["threshold"] and ck["info"]["train_images"] == sorted(
        ref_ck["info"]["train_images"] + ref_ck["info"]["val_images"])
    assert ck["info"]["threshold_from"]["file"] == "ref.pth" and "val_f1" not in ck["info"]
    assert ck["info"]["threshold_from"]["val_images"] == ref_ck["info"]["val_images"]
    assert np.isclose(Segmenter.from_file(tmp_path / "refit.onnx").threshold, ref_ck["threshold"])
    # a reference of another design, or trained on other images, is refused
    three = tmp_path / "three.pth"
    ensemble.main([*map(str, members), str(members[0]), "--root", str(tiny_dataset), "--out", str(three)])
    fewer = tmp_path / "fewer"
    shutil.copytree(tiny_dataset, fewer)
    for kind in ("image", "label", "mask"):
        (fewer / "DRIVE" / "train" / kind / "03_training.png").unlink()
    other = []
    for seed in (0, 1):
        other.append(str(tmp_path / f"other{seed}.pth"))
        train.main(["--root", str(fewer), *TINY, "--seed", str(seed), "--split-seed", "0", "--out", other[-1]])
    ensemble.main([*other, "--root", str(fewer), "--out", str(tmp_path / "other.pth")])
    for argv, message in (([*refit, "--threshold-from", str(three)], "not the same design"),
                          ([*refit, "--threshold-from", str(tmp_path / "other.pth")], "not the images the refit")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            ensemble.main([*argv, "--out", str(tmp_path / "x.pth")])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_a_refit_ensemble_takes_the_threshold_of_its_fold_ensembles_out_of_fold_maps(tiny_dataset, tmp_path):
    """--threshold-from PAIR0 PAIR1 PAIR2, one pair per --fold: each pair segments its own held-out
    image, and the refit ensemble stores the F1 optimum of those maps pooled."""
    import torch

    import ensemble
    import train

    def pair(name, *extra):
        paths = []
        for seed in (0, 1):
            out = tmp_path / f"{name}_s{seed}.pth"
            train.main(["--root", str(tiny_dataset), *TINY, *extra, "--seed", str(seed), "--split-seed", "0",
                        "--out", str(out)])
            paths.append(str(out))
        return paths

    pairs = []
    for k in range(3):
        pairs.append(tmp_path / f"pair{k}.pth")
        ensemble.main([*pair(f"f{k}", "--fold", str(k)), "--root", str(tiny_dataset), "--out", str(pairs[-1])])
    samples = {s.name: s for s in load_split(tiny_dataset, "DRIVE", "train")}
    maps = []
    for path in pairs:
        seg = Segmenter.from_file(path)
        held = torch.load(path, weights_only=True)["info"]["val_images"]
        maps += [(samples[n].label, seg.probability(samples[n].image, samples[n].fov), samples[n].fov) for n in held]
    t, f1 = best_threshold(*pooled(maps))
    out = tmp_path / "refit.pth"
    ensemble.main([*pair("all", "--val-count", "0"), "--root", str(tiny_dataset), "--threshold-from", *map(str, pairs),
                   "--out", str(out)])
    ck = torch.load(out, weights_only=True)
    assert ck["threshold"] == pytest.approx(t, abs=1e-7)
    assert ck["info"]["threshold_from"]["files"] == ["pair0.pth", "pair1.pth", "pair2.pth"]
    assert ck["info"]["threshold_from"]["val_images"] == sorted(samples)
    assert ck["info"]["threshold_from"]["val_f1"] == pytest.approx(f1, abs=1e-6)
    # the fold-0 members themselves (validated on their 1 image) may take the recipe's threshold too
    ensemble.main([*(str(tmp_path / f"f0_s{seed}.pth") for seed in (0, 1)), "--root", str(tiny_dataset),
                   "--threshold-from", *map(str, pairs), "--out", str(tmp_path / "f0_oof.pth")])
    f0 = torch.load(tmp_path / "f0_oof.pth", weights_only=True)
    assert f0["threshold"] == pytest.approx(t, abs=1e-7)
    assert f0["info"]["val_images"] == torch.load(pairs[0], weights_only=True)["info"]["val_images"]
