"""Distillation: cell- and offset-level targets from a teacher or an ensemble, feature
distillation through a projection, and runs that reload without their teacher."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from smallnet_lit.model import codec
from smallnet_lit.model.loss import DistillLoss
from smallnet_lit.model.net import SmallNet
from smallnet_lit.train import train


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


@pytest.mark.parametrize("ensemble, flip", [(False, False), (True, False), (False, True)])
def test_training_with_a_teacher_logs_the_distillation_terms(make_cfg, tmp_path, ensemble, flip):
    base = ["data.train.num_faces=8", "data.val.num_faces=4", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(base))
    teacher = tmp_path / "run" / "checkpoints" / "last.ckpt"
    teacher = f"['{teacher}','{teacher}']" if ensemble else f"'{teacher}'"
    distill = f"model.distill={{teacher:{teacher},weight:0.5,flip:{str(flip).lower()}}}"
    cfg = make_cfg([*base, "model.net.widths=[8,8,8]", distill])
    cfg.paths.output_dir = str(tmp_path / "student")
    cfg.trainer.log_every_n_steps = 1
    train(cfg)
    header = (tmp_path / "student" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_kd_cells" in header and "train/loss_kd_offsets" in header
    # the student's checkpoint carries no teacher weights
    state = torch.load(tmp_path / "student" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not any("teacher" in k for k in state)


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


def test_a_teacher_of_a_larger_input_reads_the_batch_upsampled_to_its_size(make_cfg, tmp_path):
    # the teacher: 64 px at stride 8 (8x8 cells); the student: 32 px at stride 4 (8x8 cells)
    base = ["data.train.num_faces=8", "data.val.num_faces=4", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(base))
    teacher = tmp_path / "teacher.ckpt"
    (tmp_path / "run" / "checkpoints" / "last.ckpt").rename(teacher)
    small = ["model.net.input_size=32", "model.net.widths=[8,8,8]"]
    cfg = make_cfg([*base, *small, "model.net.head_stride=4", f"model.distill={{teacher:'{teacher}',features:1.0}}"])
    cfg.paths.output_dir = str(tmp_path / "student")
    cfg.trainer.log_every_n_steps = 1
    train(cfg)
    header = (tmp_path / "student" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert {"train/loss_kd_cells", "train/loss_kd_features"} <= set(header.split(","))
    # at the student's stride of 8 its grid is 4x4: the teacher's 8x8 readings are binned into it
    cfg = make_cfg([*base, *small, f"model.distill={{teacher:'{teacher}'}}"])
    cfg.paths.output_dir = str(tmp_path / "regrid")
    cfg.trainer.log_every_n_steps = 1
    train(cfg)
    assert "train/loss_kd_cells" in (tmp_path / "regrid" / "csv" / "metrics.csv").read_text().splitlines()[0]
    # a teacher never reads shrunk crops: refused before the first step, both sizes named
    cfg = make_cfg(
        [*base, "model.net.input_size=128", "model.net.widths=[8,8,8]", f"model.distill={{teacher:'{teacher}'}}"]
    )
    cfg.paths.output_dir = str(tmp_path / "smaller")
    with pytest.raises(ValueError, match=r"its input \(64 px\) is smaller than the student's \(128 px\)"):
        train(cfg)


class _CentroidTeacher(torch.nn.Module):
    """Reads a bright blob's centroid exactly and writes it as head maps at stride 16."""

    input_size, stride = 128, 16

    def forward_maps(self, images: torch.Tensor) -> codec.HeadOutput:
        assert images.shape[-1] == self.input_size
        weight = images[:, 0].clamp(min=0)
        grid = torch.arange(self.input_size, dtype=torch.float32)
        centre = (
            torch.stack([(weight.sum(1) * grid).sum(-1), (weight.sum(2) * grid).sum(-1)], -1)
            / weight.sum((1, 2))[:, None]
        )
        cells = self.input_size // self.stride
        index, offset, _ = codec.encode(centre[:, None], self.stride, (cells, cells))
        scores = torch.full((len(images), 1, cells * cells), -50.0).scatter_(2, index[..., None], 50.0)
        offsets = offset[..., None, None].expand(-1, -1, -1, cells, cells)
        log_delta = torch.full((len(images), 1, 1, cells, cells), -3.0)  # sure of itself
        return codec.HeadOutput(scores.view(-1, 1, cells, cells), offsets, log_delta, self.stride)


def _blobs(centres: torch.Tensor, size: int) -> torch.Tensor:
    grid = torch.arange(size, dtype=torch.float32)
    blob = [torch.exp(-((grid[None] - x) ** 2 + (grid[:, None] - y) ** 2) / (2 * 3.0**2)) for x, y in centres]
    return torch.stack(blob)[:, None].expand(-1, 3, -1, -1).contiguous()


def test_a_teacher_reads_the_upsampled_batch_where_the_student_sees_its_points():
    from smallnet_lit.model.module import read_by_teacher

    # smooth blobs in a 64-px batch: the teacher, at 128 px and stride 16, reads them in the student's 8x8 cells
    centres = torch.tensor([[20.3, 37.6], [41.0, 12.25]])
    images = _blobs(centres, 64)
    out = read_by_teacher(_CentroidTeacher(), images, SimpleNamespace(input_size=64, stride=8))
    points, _, _ = codec.decode(replace(out, stride=8), "argmax")  # in the student's cells: stride 8
    torch.testing.assert_close(points[:, 0], centres, atol=0.02, rtol=0)
    # without the half-pixel term the reading is a quarter of a student pixel off
    teacher = _CentroidTeacher()
    naive = teacher.forward_maps(torch.nn.functional.interpolate(images, size=(128, 128), mode="bicubic"))
    off = codec.decode(replace(naive, stride=8), "argmax")[0][:, 0] - centres
    torch.testing.assert_close(off, torch.full_like(off, 0.25), atol=0.02, rtol=0)


def test_a_teacher_of_another_grid_is_binned_into_the_students_cells():
    from smallnet_lit.model.module import read_by_teacher

    # an 80-px student at stride 8 (10x10 cells), the 128-px teacher's 8x8 cells
    centres = torch.tensor([[20.3, 37.6], [61.0, 12.25], [45.5, 66.0]])  # blobs inside the crop
    out = read_by_teacher(_CentroidTeacher(), _blobs(centres, 80), SimpleNamespace(input_size=80, stride=8))
    assert out.scores.shape == (3, 1, 10, 10) and out.stride == 8
    for mode in ("argmax", "soft"):
        torch.testing.assert_close(codec.decode(out, mode)[0][:, 0], centres, atol=0.03, rtol=0)
    cell = (centres // 8).long()  # the cell that holds each point gets the teacher's mass
    peak = out.scores.flatten(2).softmax(-1)[:, 0].argmax(-1)
    assert peak.tolist() == (cell[:, 1] * 10 + cell[:, 0]).tolist()


@pytest.mark.parametrize("cells, stride", [(10, 8), (4, 16), (8, 8)])
def test_regridding_keeps_the_teachers_soft_argmax_points(cells, stride):
    """Binning the teacher's Gaussians into other cells moves no mass: the soft-argmax reading
    of the regridded maps is the teacher's own (law of total expectation), for any grid."""
    torch.manual_seed(0)
    teacher = SmallNet(num_points=5, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1]).eval()
    with torch.no_grad():
        teacher.head.weight.normal_(std=0.3)
        out = teacher.forward_maps(torch.randn(2, 3, 64, 64))
    regridded = codec.regrid(out, cells, stride)
    torch.testing.assert_close(codec.decode(regridded, "soft")[0], codec.decode(out, "soft")[0], atol=1e-3, rtol=0)
    assert torch.allclose(regridded.scores.flatten(2).logsumexp(-1), torch.zeros(2, 5), atol=1e-4)
    assert regridded.features.shape[-2:] == (cells, cells)


def test_init_from_a_checkpoint_without_the_projection_starts_feature_distillation(make_cfg, tmp_path):
    from smallnet_lit.model.module import load_model
    from smallnet_lit.train import start_from
    from smallnet_lit.training.instantiate import model_from

    base = ["data.train.num_faces=8", "data.val.num_faces=4", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(base))
    teacher = tmp_path / "teacher.ckpt"
    (tmp_path / "run" / "checkpoints" / "last.ckpt").rename(teacher)
    distilled = [*base, f"model.distill={{teacher:'{teacher}',features:1.0}}"]
    cfg = make_cfg([*distilled, f"init_from={teacher}"])  # the teacher's net restarted: no projection in it
    cfg.paths.output_dir = str(tmp_path / "student")
    train(cfg)
    student = tmp_path / "student" / "checkpoints" / "last.ckpt"
    trained = load_model(student)
    # a restart of the distilled run keeps the projection it trained, and the net's weights
    model = model_from(make_cfg(distilled).model, "wflw98")
    start_from(model, str(student))
    torch.testing.assert_close(model.distill_fn.projection.weight, trained.distill_fn.projection.weight)
    torch.testing.assert_close(model.net.head.weight, trained.net.head.weight)


def test_mirrored_maps_decode_to_the_flip_tests_points():
    """codec.mirror reads a teacher's maps of the mirrored crops back into the crops' frame: their
    soft-argmax points are the flip test's (LandmarkScheme.flip_points of the mirrored reading,
    plus twice the mirror shift), for every landmark and cell."""
    from smallnet_lit.model.landmarks import IBUG68

    torch.manual_seed(0)
    net = SmallNet(num_points=68, input_size=64, widths=[8, 8, 8], depths=[1, 1, 1]).eval()
    with torch.no_grad():
        net.head.weight.normal_(std=0.3)
        images = torch.randn(2, 3, 64, 64)
        out_f = net.forward_maps(images.flip(-1))
    shift = torch.tensor([0.0, 1.5])
    expected = IBUG68.flip_points(codec.decode(out_f, "soft")[0], 64)
    expected[..., 0] += shift[:, None]
    mirrored = codec.mirror(out_f, IBUG68.flip_permutation, shift)
    torch.testing.assert_close(codec.decode(mirrored, "soft")[0], expected, atol=1e-4, rtol=0)
    assert mirrored.features.shape == out_f.features.shape


def test_a_flip_averaging_teacher_reads_a_mirror_symmetric_teacher_alike():
    """The blob-centroid teacher reads a crop and its mirror image alike, so the mixture of both
    readings is its plain reading, on the student's grid; a mirror shift of s student pixels
    moves the mean by s (half of the mirrored reading's 2 s, in the teacher's upsampled pixels)."""
    from smallnet_lit.model.module import read_by_teacher

    centres = torch.tensor([[20.3, 37.6], [61.0, 12.25], [45.5, 66.0]])
    images, student = _blobs(centres, 80), SimpleNamespace(input_size=80, stride=8)
    plain = codec.decode(read_by_teacher(_CentroidTeacher(), images, student), "soft")[0]
    both = read_by_teacher(_CentroidTeacher(), images, student, flip_permutation=[0])
    torch.testing.assert_close(codec.decode(both, "soft")[0], plain, atol=0.03, rtol=0)
    shifted = read_by_teacher(_CentroidTeacher(), images, student, [0], mirror_shift=torch.tensor([0.0, 1.0, 2.0]))
    moved = codec.decode(shifted, "soft")[0] - plain
    torch.testing.assert_close(moved[:, 0, 0], torch.tensor([0.0, 1.0, 2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(moved[:, 0, 1], torch.zeros(3), atol=0.03, rtol=0)
