"""LightningModule: SmallNet + DualLoss + face-alignment metrics, one object per stage."""

from __future__ import annotations

from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import MinMetric

from smallnet_lit.landmarks import get_scheme
from smallnet_lit.loss import DualLoss
from smallnet_lit.metrics import FaceAlignmentMetrics
from smallnet_lit.net import SmallNet


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
    ) -> None:
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
        corners = self.scheme.eye_corners
        self.val_metrics = FaceAlignmentMetrics(corners, fr_threshold)
        self.test_metrics = FaceAlignmentMetrics(corners, fr_threshold, attribute_names=tuple(attribute_names))
        self.val_nme_best = MinMetric()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, K, 2) and sigma (B, K), in input pixels."""
        return self.net(images)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net.forward_maps(batch["image"])
        total, parts = self.loss_fn(out, batch["points"], batch["valid"])
        bs = len(batch["image"])
        self.log(f"{stage}/loss", total, prog_bar=stage == "train", batch_size=bs, sync_dist=stage != "train")
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, batch_size=bs, sync_dist=stage != "train")
        points, _, _ = self.net.decode(out)
        return total, points

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, _ = self._shared_step(batch, "train")
        return total

    def on_validation_epoch_start(self) -> None:
        self.val_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, points = self._shared_step(batch, "val")
        self.val_metrics.update(points, batch["points"])

    def on_validation_epoch_end(self) -> None:
        result = self.val_metrics.compute()
        self.val_nme_best.update(result["nme"])
        self.log_dict({f"val/{k}": v for k, v in result.items()}, prog_bar=True)
        self.log("val/nme_best", self.val_nme_best.compute())
        if not self.trainer.sanity_checking:
            rank_zero_info(
                f"epoch {self.current_epoch}: val NME {result['nme']:.4f}, FR@{self.hparams.fr_threshold:g} "
                f"{result['fr']:.3f}, AUC {result['auc']:.4f} (best NME {self.val_nme_best.compute():.4f})"
            )

    def on_test_epoch_start(self) -> None:
        self.test_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, points = self._shared_step(batch, "test")
        self.test_metrics.update(points, batch["points"], batch.get("attributes"))

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute().items()})

    def configure_optimizers(self) -> dict[str, Any]:
        if self.hparams.optimizer is None:
            raise ValueError("model.optimizer is not set: training needs an optimizer config")
        optimizer = hydra.utils.instantiate(self.hparams.optimizer, _partial_=True)(params=self.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = hydra.utils.instantiate(self.hparams.scheduler, _partial_=True)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
