"""Knowledge distillation (train.py --teacher): the teachers' term of the loss, their maps carried
through the augmentation with the labels, and the training run that learns from them."""
import numpy as np
import pytest

from conftest import write_av_set

TINY = ["--epochs", "2", "--width", "4", "--depth", "3", "--val-count", "1", "--val-every", "1", "--batch-size", "2"]


@pytest.fixture
def av_root(tmp_path):
    return write_av_set(tmp_path / "root", {"train": ("training", 3), "test": ("test", 1)})


def _train(root, out, *extra):
    import train

    train.main(["--root", str(root), "--dataset", "DRIVE-AV", "--av", *TINY, *extra, "--out", str(out)])
    return out


def _refused(capsys, root, out, *extra):
    """The one line with which train.py refuses these options (no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _train(root, out, *extra)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err
    return err


@pytest.fixture
def targets(monkeypatch):
    """Every target batch the distillation loss is given during training (as it is given it)."""
    import losses

    seen = []
    forward = losses.DistillationLoss.forward

    def spy(self, logits, target):
        seen.append(target.detach().clone())
        return forward(self, logits, target)

    monkeypatch.setattr(losses.DistillationLoss, "forward", spy)
    return seen


def test_the_teachers_term_pulls_each_output_to_the_teachers_probability_and_the_kind_only_on_its_vessels():
    import torch

    from losses import ArteryVeinLoss, CEDiceLoss, DistillationLoss

    # pixels: background the teacher calls background; annotated artery; annotated vein; uncertain that the
    # teacher calls a vessel and an artery
    classes = [0, 1, 2, 3]
    vessel = [0, 255, 255, 255]
    artery = [255, 255, 0, 255]  # where the teacher sees no vessel its kind must not count
    target = torch.tensor([[[classes], [vessel], [artery]]], dtype=torch.float32)
    logits = torch.zeros(1, 2, 1, 4, requires_grad=True)
    base = ArteryVeinLoss(CEDiceLoss())
    loss = DistillationLoss(base, weight=2.0)(logits, target)
    loss.backward()
    # at logit 0 every binary cross-entropy is log 2: the vessel term and the kind term, times the weight
    assert loss.item() == pytest.approx(base(logits.detach(), target[:, :1]).item() + 2 * 2 * np.log(2), rel=1e-5)
    kind = logits.grad[0, 1, 0]
    assert kind[0] == 0  # no vessel for the teacher: its kind map is not learnt there
    assert kind[3] < 0  # uncertain for the annotator, an artery for the teacher: pushed towards artery
    assert kind[1] < 0 < kind[2]  # the labels' kinds still pull
    assert DistillationLoss(base, weight=0.0)(logits, target).item() == pytest.approx(
        base(logits.detach(), target[:, :1]).item(), rel=1e-6)
    with pytest.raises(ValueError):
        DistillationLoss(base)(logits, target[:, :2])  # one teacher map for two outputs


def test_the_teachers_maps_follow_the_label_through_every_augmentation_and_the_batch():
    import torch

    from training_data import VesselDataset, augmentation, pad_collate

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)
    classes = np.kron(rng.integers(0, 4, (10, 13)), np.ones((4, 4), int)).astype(np.uint8)
    label = np.dstack([classes, classes * 60, 255 - classes * 60])  # maps that are functions of the label
    torch.manual_seed(0)
    ds = VesselDataset([image, image[:30]], [label, label[:30]], augmentation("strong", crop=32))
    for _ in range(5):
        x, y = pad_collate([ds[0], ds[1]])
        assert y.shape == (2, 3, 32, 32) and x.shape == (2, 3, 32, 32)
        inside = y[:, 1:] > 0
        # moved by the same rotation, scale, flip and crop: each teacher pixel still belongs to its label pixel
        assert torch.equal(y[:, 1], y[:, 0] * 60)
        assert torch.equal(y[:, 2][inside[:, 1]], (255 - y[:, 0] * 60)[inside[:, 1]])


def test_train_with_teachers_learns_their_maps_and_records_them(av_root, tmp_path, targets):
    import train
    from unet import read_checkpoint

    teachers = [_train(av_root, tmp_path / f"t{seed}.pth", "--seed", str(seed), "--split-seed", "0")
                for seed in (0, 1)]
    seen = targets
    out = _train(av_root, tmp_path / "student.pth", "--teacher", *map(str, teachers), "--teacher-weight", "0.5")
    info = read_checkpoint(out)["info"]
    assert info["distilled_from"] == {"files": ["t0.pth", "t1.pth"], "weight": 0.5}
    assert seen and all(t.shape[1] == 3 for t in seen)
    # the teachers' vessel probability is where the labels' vessels are, more than elsewhere
    t = seen[0][0]
    assert t[1][t[0] > 0].mean() > t[1][t[0] == 0].mean()
    assert 0 < t[2].max() <= 255
    # the mean of the two teachers, as train.teacher_maps gives it
    image = train.load_split(str(av_root), "DRIVE-AV", "train", av=True)[0]
    maps = train.teacher_maps(teachers, [train.enhance(image.image, "clahe")], read_checkpoint(out)["preprocess"], [])
    assert maps[0].shape == image.image.shape[:2] + (2,) and maps[0].dtype == np.uint8


def test_a_teacher_that_saw_a_validation_image_or_preprocesses_otherwise_is_refused_in_one_line(
        av_root, tmp_path, tiny_dataset, capsys):
    other_split = _train(av_root, tmp_path / "t.pth", "--split-seed", "1")
    err = _refused(capsys, av_root, tmp_path / "s.pth", "--teacher", str(other_split))
    assert "--teacher" in err and "validation image" in err

    import train

    vessel = tmp_path / "vessel.pth"
    train.main(["--root", str(tiny_dataset), *TINY, "--out", str(vessel)])
    err = _refused(capsys, av_root, tmp_path / "s.pth", "--teacher", str(vessel))
    assert "--teacher" in err and "not this run's" in err
    err = _refused(capsys, av_root, tmp_path / "s.pth", "--teacher-weight", "2")
    assert "--teacher-weight" in err and "--teacher" in err


def test_a_photograph_without_labels_is_learnt_from_the_teachers_alone():
    import torch

    from losses import UNLABELLED, ArteryVeinLoss, CEDiceLoss, DistillationLoss

    base = ArteryVeinLoss(CEDiceLoss())
    labelled = [[[0, 1, 2, 0]], [[0, 255, 255, 0]], [[0, 255, 0, 0]]]  # classes; teacher vessel; teacher artery
    unlabelled = [[[0, UNLABELLED, UNLABELLED, 0]], [[0, 0, 255, 0]], [[0, 0, 255, 0]]]
    target = torch.tensor([labelled, unlabelled], dtype=torch.float32)
    logits = torch.zeros(2, 2, 1, 4, requires_grad=True)
    loss = DistillationLoss(base)(logits, target)
    loss.backward()
    # the labels' loss of the labelled photograph alone, and the teachers' term (log 2 + log 2 at logit 0)
    assert loss.item() == pytest.approx(base(logits[:1].detach(), target[:1, :1]).item() + 2 * np.log(2), rel=1e-5)
    vessel = logits.grad[1, 0, 0]
    # pixel 1 of the unlabelled photograph: the teacher sees no vessel, so it is pushed down, as label 255
    # ("vessel") would not do; pixel 2: a vessel for the teacher, pushed up
    assert vessel[1] > 0 > vessel[2]
    assert logits.grad[1, 1, 0, 1] == 0 and logits.grad[1, 1, 0, 2] < 0  # its kind only where the teacher sees a vessel
    only = DistillationLoss(base)(torch.zeros(1, 2, 1, 4), target[1:])  # a batch without labels: the teachers' term
    assert only.item() == pytest.approx(2 * np.log(2), rel=1e-5)


def test_train_learns_photographs_without_labels_from_the_teachers(av_root, tmp_path, targets, capsys):
    import losses
    from unet import read_checkpoint

    teacher = _train(av_root, tmp_path / "t.pth")
    seen = targets
    folder = av_root / "DRIVE-AV" / "test" / "image"
    out = _train(av_root, tmp_path / "s.pth", "--teacher", str(teacher), "--unlabelled", str(folder))
    record = read_checkpoint(out)["info"]["distilled_from"]
    assert record["unlabelled"] == {"folders": [folder.as_posix()], "photographs": 1}
    marked = [t for batch in seen for t in batch if (t[0] == losses.UNLABELLED).any()]
    assert marked and all(set(t[0].unique().tolist()) <= {0, losses.UNLABELLED} for t in marked)
    assert all(t[1].max() > 0 for t in marked)  # the teacher's vessels are its target
    err = _refused(capsys, av_root, tmp_path / "s2.pth", "--unlabelled", str(folder))
    assert "--unlabelled" in err and "--teacher" in err
    err = _refused(capsys, av_root, tmp_path / "s2.pth", "--teacher", str(teacher), "--unlabelled", str(tmp_path / "nowhere"))
    assert "nowhere" in err
