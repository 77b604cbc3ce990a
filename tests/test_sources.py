"""Several face sets in one run (data=faces68), the hard-face subset, in-the-wild
augmentation and distillation."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from smallnet_lit.data.augment import Photometric
from smallnet_lit.data.crop import CropConfig, crop_transform
from smallnet_lit.data.datamodule import FaceDataModule
from smallnet_lit.data.faces import FaceDataset, FaceSample
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.mix import SourceMix, ibug_mix
from smallnet_lit.model import codec
from smallnet_lit.model.landmarks import IBUG68
from smallnet_lit.model.loss import DistillLoss
from smallnet_lit.model.net import SmallNet
from smallnet_lit.train import train
from smallnet_lit.training.hard_faces import Difficulty, hard_flags, sharpness, yaw_asymmetry
from tests.helpers.faces import write_ibug
from tests.helpers.runs import run_eval


def write_numbered(root: Path, n: int, size: int = 160) -> Path:
    """LFPW-style names (image_0001.jpg): every file its own photo."""
    from shutil import copy

    src = write_ibug(root.parent / (root.name + "_src"), n, 1, size)
    root.mkdir(parents=True)
    for i, pts in enumerate(sorted(src.rglob("*.pts")), start=1):
        copy(pts, root / f"image_{i:04d}.pts")
        copy(pts.with_suffix(".jpg"), root / f"image_{i:04d}.jpg")
    return root


@pytest.fixture
def three_sources(tmp_path) -> dict[str, Path]:
    return {
        "ibug300w": write_ibug(tmp_path / "a", 8, 2),
        "lfpw": write_numbered(tmp_path / "b", 10),
        "ytf68": write_ibug(tmp_path / "c", 6, 3),
    }


def source_overrides(roots: dict[str, Path]) -> list[str]:
    out = []
    for name, root in roots.items():
        out += [f"data.sources.{name}.root={root}", f"data.sources.{name}.val_fraction=0.3"]
    return out


def test_a_source_in_a_mix_keeps_the_split_of_its_own_folder(three_sources):
    alone = IbugFaces(three_sources["ibug300w"], split="val", val_fraction=0.3)
    mixed = ibug_mix({n: {"root": str(r), "val_fraction": 0.3} for n, r in three_sources.items()}, "val")
    first = [mixed.load(i).key for i in range(len(mixed)) if mixed.source_of(i) == 0]
    assert first == [f"ibug300w:{r.key}" for r in alone.records]
    assert mixed.names == ("ibug300w", "lfpw", "ytf68")
    assert len(mixed) == sum(len(p) for p in mixed.parts)


def test_numbered_files_split_one_by_one_when_told(three_sources):
    # LFPW's image_XXXX names would all be one "photo" under the 300-W suffix rule.
    by_suffix = IbugFaces(three_sources["lfpw"], split="all")
    assert by_suffix.split_groups == ["image"]
    one_each = IbugFaces(three_sources["lfpw"], split="all", photo_suffix=None)
    assert len(one_each.split_groups) == 10
    val = IbugFaces(three_sources["lfpw"], split="val", val_fraction=0.3, photo_suffix=None)
    train = IbugFaces(three_sources["lfpw"], split="train", val_fraction=0.3, photo_suffix=None)
    assert len(val) + len(train) == 10 and len(val) > 0


def test_missing_or_empty_source_is_named(tmp_path, three_sources):
    with pytest.raises(FileNotFoundError, match="data source 'gone'"):
        ibug_mix({"gone": {"root": str(tmp_path / "nowhere")}}, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="data source 'empty'.*no .pts files"):
        ibug_mix(
            {"ibug300w": {"root": str(three_sources["ibug300w"])}, "empty": {"root": str(tmp_path / "empty")}}, "train"
        )
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ibug_mix({"ibug300w": {"root": str(three_sources["ibug300w"]), "weight": -1}}, "train")


def test_weighted_sampling_follows_the_source_weights(three_sources):
    train_mix = ibug_mix(
        {
            "a": {"root": str(three_sources["ibug300w"]), "weight": 1.0},
            "b": {"root": str(three_sources["ytf68"]), "weight": 0.25},
        },
        "train",
    )
    dm = FaceDataModule(train_mix, None, input_size=64, batch_size=50, train_samples_per_epoch=4000, seed=1)
    drawn = np.array([train_mix.source_of(i) for i in dm.train_dataloader().sampler])
    size_a, size_b = len(train_mix.parts[0]), len(train_mix.parts[1])
    expected_b = 0.25 * size_b / (size_a + 0.25 * size_b)
    assert len(drawn) == 4000
    assert abs((drawn == 1).mean() - expected_b) < 0.03


def test_weight_zero_leaves_a_source_out_of_training_but_validates_it(three_sources):
    sources = {n: {"root": str(r), "val_fraction": 0.3} for n, r in three_sources.items()}
    sources["ytf68"]["weight"] = 0
    sources["lfpw"]["photo_suffix"] = None
    assert ibug_mix(sources, "train").names == ("ibug300w", "lfpw")
    assert ibug_mix(sources, "val").names == ("ibug300w", "lfpw", "ytf68")


def test_faces68_trains_and_reports_every_source(make_cfg, tmp_path, three_sources):
    cfg = make_cfg(["data=faces68", *source_overrides(three_sources), "trainer.max_epochs=1", "test=false"])
    metrics = train(cfg)
    for name in three_sources:
        assert 0 < metrics[f"val/{name}/nme"] < 10
    split = json.loads((tmp_path / "run" / "data_split.json").read_text())
    assert set(split["val"]) == set(three_sources)
    assert not set(split["train"]["ibug300w"]) & set(split["val"]["ibug300w"])

    # eval on the mix: per-source and hard-subset figures, difficulty in each line
    result, out = run_eval(
        make_cfg,
        tmp_path / "eval",
        tmp_path / "run" / "checkpoints" / "last.ckpt",
        ["data=faces68", "split=val", *source_overrides(three_sources), f"data.cache.dir={tmp_path / 'c'}"],
    )
    assert {f"val/{n}/nme" for n in three_sources} <= set(result)
    faces = json.loads((out / "metrics.json").read_text())["faces"]
    assert result["val/hard/faces"] >= int(np.ceil(0.1 * faces))
    row = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert set(row["difficulty"]) == {"yaw_asymmetry", "iod_pixels", "sharpness"}


def test_hard_flags_pick_the_worst_tenth_of_each_measure():
    faces = [Difficulty(yaw_asymmetry=i / 30, iod_pixels=100 + i, sharpness=500 - i) for i in range(30)]
    flags = hard_flags(faces)
    assert [int(f.sum()) for f in (flags["large_yaw"], flags["small"], flags["blurred"])] == [3, 3, 3]
    assert flags["large_yaw"][-3:].all()  # the most turned
    assert flags["small"][:3].all()  # the smallest inter-ocular distances
    assert flags["blurred"][-3:].all()  # the lowest sharpness
    assert flags["hard"].sum() == 6


def test_yaw_asymmetry_grows_as_the_nose_moves_to_one_side():
    points = np.zeros((68, 2))
    points[0], points[16] = (0, 50), (100, 50)  # contour ends
    points[36], points[45] = (20, 30), (80, 30)  # outer eye corners
    points[30] = (50, 60)
    frontal = yaw_asymmetry(points, IBUG68)
    points[30] = (85, 60)
    turned = yaw_asymmetry(points, IBUG68)
    assert frontal == pytest.approx(0) and turned == pytest.approx(0.7)


def test_blur_lowers_sharpness():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    points = np.array([[50.0, 50.0], [150.0, 150.0]])
    assert sharpness(cv2.GaussianBlur(image, (0, 0), 3), points) < 0.1 * sharpness(image, points)


def test_squeeze_narrows_the_face_and_moves_the_points_exactly():
    points = np.array([[40.0, 50.0], [120.0, 50.0], [80.0, 130.0]])
    sample = FaceSample(np.zeros((160, 160, 3), np.uint8), points, "")
    plain, _ = crop_transform(sample, 64, CropConfig(), None)
    widths = []
    for seed in range(20):
        m, _ = crop_transform(sample, 64, CropConfig(squeeze=0.5), np.random.default_rng(seed))
        p = points @ m[:, :2].T + m[:, 2]
        widths.append(np.ptp(p[:, 0]) / np.ptp(p[:, 1]))
    base = points @ plain[:, :2].T + plain[:, 2]
    assert min(widths) < 0.8 * np.ptp(base[:, 0]) / np.ptp(base[:, 1]) < max(widths) + 1e-9


def test_in_the_wild_augmentation_is_seeded_and_keeps_the_old_stream_when_off(ibug_root):
    source = IbugFaces(ibug_root)
    on = Photometric(lighting=1, strong_blur=1, lowres=1, jpeg=1)
    ds = FaceDataset(source, 64, CropConfig(rotation=10), True, on, seed=3)
    a, b = ds[0]["image"], ds[0]["image"]
    torch.testing.assert_close(a, b)
    plain = FaceDataset(source, 64, CropConfig(rotation=10), True, Photometric(), seed=3)[0]["image"]
    assert (a - plain).abs().mean() > 0.05
    # enabling nothing new leaves the augmentation exactly as before the options existed
    zero = FaceDataset(source, 64, CropConfig(rotation=10), True, Photometric(lowres=0, jpeg=0), seed=3)[0]["image"]
    torch.testing.assert_close(zero, plain)
    with pytest.raises(ValueError, match="lowres must be a probability"):
        Photometric(lowres=2)


def test_distillation_loss_is_zero_for_the_teacher_itself_and_pulls_a_student():
    torch.manual_seed(0)
    teacher = SmallNet(num_points=5, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1])
    student = SmallNet(num_points=5, input_size=64, widths=[8, 8, 8], depths=[1, 1, 1])
    images = torch.randn(2, 3, 64, 64)
    kd = DistillLoss(cells=1.0, offsets=1.0, temperature=2.0)
    t_out = teacher.forward_maps(images)
    zero, _ = kd(t_out, t_out)
    assert zero.item() == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        teacher.head.weight.mul_(300)  # a peaked teacher
        t_out = teacher.forward_maps(images)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, parts = kd(student.forward_maps(images), t_out)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first and set(parts) == {"loss_kd_cells", "loss_kd_offsets"}
    other = SmallNet(num_points=5, input_size=64, widths=[8, 8], depths=[1, 1], pool_levels=2)
    with pytest.raises(ValueError, match="head grids differ"):
        kd(other.forward_maps(images), t_out)


def test_ensemble_maps_decode_to_the_mean_of_the_members_points():
    torch.manual_seed(0)
    members = [SmallNet(num_points=5, input_size=64, widths=[8, 8, 8], depths=[1, 1, 1]) for _ in range(3)]
    for net in members:
        with torch.no_grad():
            net.head.weight.normal_(std=0.3)  # distinct, peaked members
    images = torch.randn(2, 3, 64, 64)
    outs = [net.forward_maps(images) for net in members]
    mixed = codec.mixture(outs)
    expected = torch.stack([codec.decode(o, "soft")[0] for o in outs]).mean(0)
    torch.testing.assert_close(codec.decode(mixed, "soft")[0], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(codec.decode(codec.mixture(outs[:1]), "soft")[0], codec.decode(outs[0], "soft")[0])
    other = SmallNet(num_points=5, input_size=32, widths=[8, 8, 8], depths=[1, 1, 1])
    with pytest.raises(ValueError, match="share the head grid"):
        codec.mixture([outs[0], other.forward_maps(torch.randn(2, 3, 32, 32))])


@pytest.mark.parametrize("ensemble", [False, True])
def test_training_with_a_teacher_logs_the_distillation_terms(make_cfg, tmp_path, ensemble):
    base = ["data.train.num_faces=8", "data.val.num_faces=4", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(base))
    teacher = tmp_path / "run" / "checkpoints" / "last.ckpt"
    teacher = f"['{teacher}','{teacher}']" if ensemble else f"'{teacher}'"
    cfg = make_cfg([*base, "model.net.widths=[8,8,8]", f"model.distill={{teacher:{teacher},weight:0.5}}"])
    cfg.paths.output_dir = str(tmp_path / "student")
    cfg.trainer.log_every_n_steps = 1
    train(cfg)
    header = (tmp_path / "student" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_kd_cells" in header and "train/loss_kd_offsets" in header
    # the student's checkpoint carries no teacher weights
    state = torch.load(tmp_path / "student" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not any("teacher" in k for k in state)


def test_source_mix_rejects_mixed_schemes(ibug_root):
    from smallnet_lit.data.synthetic import SyntheticFaces

    with pytest.raises(ValueError, match="different landmark schemes"):
        SourceMix({"a": IbugFaces(ibug_root), "b": SyntheticFaces(num_faces=2, seed=1)})


def test_channels_last_computes_the_same_loss_and_gradients():
    from smallnet_lit.model.module import LandmarkModule

    torch.manual_seed(0)
    kwargs = dict(
        net=dict(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], norm=True), scheme="ibug68"
    )
    plain, nhwc = LandmarkModule(**kwargs), LandmarkModule(**kwargs, channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    nhwc.net.to(memory_format=torch.channels_last)  # what on_fit_start does
    batch = {"image": torch.randn(4, 3, 64, 64), "points": torch.rand(4, 68, 2) * 60, "valid": torch.ones(4, 68)}
    assert nhwc._images(batch).is_contiguous(memory_format=torch.channels_last)
    losses = []
    for module in (plain, nhwc):
        out = module.net.forward_maps(module._images(batch))
        loss, _ = module.loss_fn(out, batch["points"], batch["valid"])
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    torch.testing.assert_close(plain.net.head.weight.grad, nhwc.net.head.weight.grad, rtol=1e-3, atol=1e-5)


def test_feature_distillation_pulls_the_students_features_through_a_projection():
    torch.manual_seed(0)
    teacher = SmallNet(num_points=5, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1])
    student = SmallNet(num_points=5, input_size=64, widths=[8, 8, 8], depths=[1, 1, 1])
    images = torch.randn(4, 3, 64, 64)
    kd = DistillLoss(cells=0.0, offsets=0.0, features=1.0, student_channels=24, teacher_channels=40)
    with torch.no_grad():
        t_out = teacher.forward_maps(images)
    opt = torch.optim.Adam([*student.parameters(), *kd.parameters()], lr=1e-2)
    losses = []
    for _ in range(40):
        loss, parts = kd(student.forward_maps(images), t_out)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0] and "loss_kd_features" in parts
    with pytest.raises(ValueError, match="feature channels"):
        DistillLoss(features=1.0)


def test_a_run_with_feature_distillation_reloads_without_its_teacher(make_cfg, tmp_path):
    from smallnet_lit.inference.deploy import export_slim
    from smallnet_lit.model.module import load_model

    base = ["data.train.num_faces=8", "data.val.num_faces=4", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(base))
    teacher = tmp_path / "teacher.ckpt"
    (tmp_path / "run" / "checkpoints" / "last.ckpt").rename(teacher)
    cfg = make_cfg([*base, "model.net.widths=[8,8,8]", f"model.distill={{teacher:'{teacher}',features:1.0}}"])
    cfg.paths.output_dir = str(tmp_path / "student")
    cfg.trainer.log_every_n_steps = 1
    train(cfg)
    assert "train/loss_kd_features" in (tmp_path / "student" / "csv" / "metrics.csv").read_text().splitlines()[0]
    student = tmp_path / "student" / "checkpoints" / "last.ckpt"
    teacher.unlink()
    assert load_model(student).distill_fn.projection.out_channels == 16 + 16 + 8  # the teacher's pooled levels
    slim = export_slim(student, tmp_path / "slim.ckpt")
    assert not any(k.startswith("distill_fn.") for k in torch.load(slim, weights_only=False)["state_dict"])
    load_model(slim)  # loads without the projection or the teacher
