"""LightningModule: SmallNet + DualLoss + face-alignment metrics, one object per stage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MinMetric

from smallnet_lit.errors import BadInputError
from smallnet_lit.model import codec, quant
from smallnet_lit.model.checkpoints import load_net, model_protocol, read_checkpoint, resolve_model
from smallnet_lit.model.landmarks import get_scheme
from smallnet_lit.model.loss import DistillLoss, DualLoss
from smallnet_lit.model.metrics import FaceAlignmentMetrics
from smallnet_lit.model.net import SmallNet


class LandmarkModule(L.LightningModule):
    """All arguments are plain containers so a checkpoint rebuilds the model without
    Hydra: `LandmarkModule.load_from_checkpoint(path)`.

    net: SmallNet keyword arguments; loss: DualLoss keyword arguments; optimizer /
    scheduler: `_target_` configs (instantiated when training starts); scheme: landmark
    scheme name; attribute_names: per-face attribute flags reported on the test split.
    """

    def __init__(
        self,
        net: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        scheme: str = "wflw98",
        attribute_names: tuple[str, ...] | list[str] = (),
        fr_threshold: float = 0.10,
        distill: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool | str = False,
        error_calibration: dict[str, Any] | None = None,
        protocol: dict[str, float] | None = None,
        quant_aware: dict[str, Any] | None = None,
    ) -> None:
        """distill: {teacher: checkpoint path or shipped name, or a list of them (an
        ensemble: `codec.mixture` of their maps), cells, offsets, temperature, features, weight,
        flip (each teacher also reads the mirrored crops: the flip test's mean)}: add
        weight * DistillLoss(student maps, teacher maps) to the training loss. A teacher of a
        larger input size reads the student's batch upsampled to it, its maps brought to the
        student's head grid (`read_by_teacher`). Teachers are loaded when training starts and
        never saved into this model's checkpoints.
        channels_last: run the convolutions in NHWC memory layout (faster on CPUs:
        docs/speed.md); the weights and their checkpoints are the same either way.
        compile: torch.compile the network's forward for training and validation (True:
        inductor; or a backend's name); the module keeps the plain network, so checkpoints
        and exports do not change.
        error_calibration: {a, b, ...} of `model.uncertainty.predicted_nme`, fitted by eval on a
        validation split and stored by `smallnet-export --error-calibration`.
        protocol: the crop protocol (crop_scale, pixel_mean, pixel_std: checkpoints.model_protocol)
        that prediction and evaluation reproduce; train.py records the data's.
        quant_aware: {weight_bits: 7, momentum: 0.01}: quantization-aware fine-tuning
        (`model/quant.py`): while fitting, every conv but the head computes as the int8 export
        does, so validation reports int8-like NME and the weights learn to round well. Needs
        the deployed net (`net.reparam` false; init_from a RepVGG checkpoint folds it)."""
        super().__init__()
        self.save_hyperparameters()
        self.scheme = get_scheme(scheme)
        self.net = SmallNet(**net)
        if self.net.num_points != self.scheme.num_points:
            raise ValueError(
                f"model.net.num_points={self.net.num_points} does not match the {self.scheme.name} "
                f"scheme ({self.scheme.num_points} points)"
            )
        self.loss_fn = DualLoss(**(loss or {}))
        distill = dict(distill or {})
        self.distill_teacher = distill.pop("teacher", None)
        self.distill_weight = float(distill.pop("weight", 1.0))
        self.distill_flip = bool(distill.pop("flip", False))
        if self.distill_teacher and distill.get("features", 0) > 0:
            distill["student_channels"] = self.net.head.in_channels
            distill["teacher_channels"] = distill.get("teacher_channels") or _feature_channels(self.distill_teacher)
            # stored, so that a checkpoint of this run reloads without reading the teacher
            self.hparams["distill"] = {**self.hparams["distill"], "teacher_channels": distill["teacher_channels"]}
        self.distill_fn = DistillLoss(**distill) if self.distill_teacher else None
        self._teachers: list[SmallNet] = []  # a plain list keeps the teachers out of state_dict
        self._teachers_learned_shift: list[bool] = []
        corners = self.scheme.eye_corners
        self.val_metrics = FaceAlignmentMetrics(corners, fr_threshold)
        self.test_metrics = FaceAlignmentMetrics(corners, fr_threshold, attribute_names=tuple(attribute_names))
        self.val_nme_best = MinMetric()
        self._forward_maps = self.net.forward_maps  # torch.compile'd in on_fit_start when asked
        if quant_aware is not None:
            quant.check_settings(quant_aware)
        if quant_aware is not None and (self.net.reparam or net.get("norm")):
            raise ValueError(
                "model.quant_aware needs the deployed net: set model.net.reparam=false "
                "model.net.norm=false and start from the trained checkpoint with init_from=CKPT "
                "(its RepVGG branches are folded)"
            )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) and sigma (B, K), in input pixels."""
        return self.net(images)

    def _images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.hparams.get("channels_last"):
            return batch["image"].contiguous(memory_format=torch.channels_last)
        return batch["image"]

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._images(batch)
        out = self._forward_maps(images)
        total, parts = self.loss_fn(out, batch["points"], batch["valid"])
        if stage == "train" and self.distill_fn is not None:
            with torch.no_grad():
                members = [
                    read_by_teacher(teacher, images, self.net, *self._teacher_flip(batch, learned))
                    for teacher, learned in zip(self._teachers, self._teachers_learned_shift, strict=True)
                ]
                teacher_out = members[0] if len(members) == 1 else codec.mixture(members)
            kd, kd_parts = self.distill_fn(out, teacher_out)
            total = total + self.distill_weight * kd
            parts = {**parts, **kd_parts}
        bs = len(batch["image"])
        self.log(f"{stage}/loss", total, prog_bar=stage == "train", batch_size=bs, sync_dist=stage != "train")
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, batch_size=bs, sync_dist=stage != "train")
        points, _, _ = self.net.decode(out)
        return total, points

    def on_fit_start(self) -> None:
        if self.hparams.get("channels_last"):
            self.net.to(memory_format=torch.channels_last)
        if (qat := self.hparams.get("quant_aware")) is not None:
            # only while fitting: eval and prediction of the checkpoint run the float net
            count = quant.attach(self.net, **qat)
            rank_zero_info(f"quantization-aware: {count} convs compute as the int8 export does ({dict(qat)})")
        if backend := self.hparams.get("compile"):
            backend = "inductor" if backend is True else str(backend)
            self._forward_maps = torch.compile(self.net.forward_maps, backend=backend)
            rank_zero_info(f"torch.compile: the network's forward compiles on first use (backend {backend})")
        if self.distill_teacher and not self._teachers:
            names = self.distill_teacher
            names = [names] if isinstance(names, str) else list(names)
            for name in names:
                loaded = load_net(name, self.device)
                teacher = loaded.net
                # as eval's flip test: a teacher with an offset at its output did not learn the mirror shift
                protocol = model_protocol(loaded.hparams)
                self._teachers_learned_shift.append(protocol["offset_x"] == protocol["offset_y"] == 0.0)
                for p in teacher.parameters():
                    p.requires_grad_(False)
                if self.hparams.get("channels_last"):
                    teacher.to(memory_format=torch.channels_last)
                _check_teacher(self.net, teacher, name)
                self._teachers.append(teacher)
            flip = ", each reading its crops and their mirror images" if self.distill_flip else ""
            rank_zero_info(f"distilling from {', '.join(map(str, names))} (weight {self.distill_weight:g}{flip})")

    def _teacher_flip(self, batch: dict[str, torch.Tensor], learned_shift: bool) -> tuple:
        """read_by_teacher's flip arguments for a batch: none without model.distill.flip."""
        if not self.distill_flip:
            return None, None
        shift = batch.get("mirror_shift") if learned_shift else None
        return self.scheme.flip_permutation, shift

    def on_fit_end(self) -> None:
        quant.detach(self.net)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, _ = self._shared_step(batch, "train")
        return total

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, points = self._shared_step(batch, "val")
        self.val_metrics.update(points, batch["points"], groups=batch.get("source"))

    def _source_names(self, split: str) -> tuple[str, ...]:
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule.source_names(split) if hasattr(datamodule, "source_names") else ()

    def on_validation_epoch_end(self) -> None:
        result = self.val_metrics.compute(self._source_names("val"))
        self.log_dict({f"val/{k}": v for k, v in result.items()}, prog_bar=True)
        # The sanity check runs untrained weights on a few batches: not a validation epoch,
        # so it must not count towards the best NME (the figure sweeps optimize).
        if self.trainer.sanity_checking:
            return
        self.val_nme_best.update(result["nme"])
        best = self.val_nme_best.compute()
        self.log("val/nme_best", best)
        per_source = ", ".join(f"{k[:-4]} {v:.4f}" for k, v in result.items() if k.endswith("/nme"))
        rank_zero_info(
            f"epoch {self.current_epoch}: val NME {result['nme']:.4f}, FR@{self.hparams.fr_threshold:g} "
            f"{result['fr']:.3f}, AUC {result['auc']:.4f} (best NME {best:.4f})"
            + (f"; per source: {per_source}" if per_source else "")
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # MinMetric state is not in the state_dict: keep it so a resumed run's best is right.
        if self.val_nme_best.update_count:
            checkpoint["val_nme_best"] = float(self.val_nme_best.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "val_nme_best" in checkpoint:
            self.val_nme_best.reset()
            self.val_nme_best.update(torch.tensor(checkpoint["val_nme_best"], device=self.device))

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, points = self._shared_step(batch, "test")
        self.test_metrics.update(points, batch["points"], batch.get("attributes"), batch.get("source"))

    def on_test_epoch_end(self) -> None:
        result = self.test_metrics.compute(self._source_names("test"))
        self.log_dict({f"test/{k}": v for k, v in result.items()})

    def configure_optimizers(self) -> dict[str, Any]:
        if self.hparams.optimizer is None:
            raise ValueError("model.optimizer is not set: training needs an optimizer config")
        optimizer = hydra.utils.instantiate(self.hparams.optimizer, _partial_=True)(params=self.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = hydra.utils.instantiate(self.hparams.scheduler, _partial_=True)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def read_by_teacher(
    teacher: SmallNet,
    images: torch.Tensor,
    student: SmallNet,
    flip_permutation=None,
    mirror_shift: torch.Tensor | None = None,
) -> codec.HeadOutput:
    """A teacher's maps of the student's batch, on the student's head grid. A teacher of a
    larger input reads the batch upsampled (bicubic), so it sees only what the student sees;
    upsampling by f moves a point at student pixel p to f * p + (f - 1) / 2 (pixel centres at
    integers), which the teacher's offsets are moved back by. Where the grids differ (an 80-px
    net's 10x10 cells, the 128-px default's 8x8), `codec.regrid` bins the teacher's readings
    into the student's cells. With `flip_permutation` the teacher also reads the mirrored batch
    and teaches the mixture of both readings (the flip test's mean points; its features stay the
    unmirrored reading's); `mirror_shift` (B,): the sources' flip offsets in the student's
    pixels, added back as the flip test does for a teacher that learned them."""
    upsampled, factor, shift = codec.upsample(images, teacher.input_size)
    out = teacher.forward_maps(upsampled)
    if flip_permutation is not None:
        twice = 2 * mirror_shift * factor if mirror_shift is not None else None
        mirrored = codec.mirror(teacher.forward_maps(upsampled.flip(-1)), flip_permutation, twice)
        out = replace(codec.mixture([out, mirrored]), features=out.features)
    cells = student.input_size // student.stride
    if out.scores.shape[-2:] != (cells, cells):
        return codec.regrid(out, cells, student.stride, factor, shift)
    return replace(out, offsets=out.offsets - shift / out.stride) if shift else out


def _check_teacher(student: SmallNet, teacher: SmallNet, name) -> None:
    """A teacher reads the student's crops at its own input size, upsampled, never smaller."""
    if teacher.input_size < student.input_size:
        raise ValueError(
            f"distillation teacher {name}: its input ({teacher.input_size} px) is smaller than the "
            f"student's ({student.input_size} px); a teacher reads the student's crops upsampled, not shrunk"
        )


def _feature_channels(teacher) -> int:
    """The channels of a teacher's pooled head features, from its checkpoint's config."""
    if not isinstance(teacher, str | Path):
        raise ValueError("feature distillation (model.distill.features > 0) needs one teacher, not an ensemble")
    return SmallNet(**read_checkpoint(resolve_model(teacher))["hyper_parameters"]["net"]).head.in_channels


def load_model(ckpt_path: str | Path, device: str = "cpu") -> LandmarkModule:
    """A LandmarkModule in eval mode from a checkpoint (full or slim) or a shipped model's name."""
    ckpt = read_checkpoint(resolve_model(ckpt_path))
    try:
        model = LandmarkModule(**ckpt["hyper_parameters"])
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, RuntimeError, ValueError) as e:
        raise BadInputError(f"{ckpt_path}: checkpoint does not match this version of SmallNet ({e})") from None
    return model.to(device).eval()
