"""The LightningDataModule: face sources for each split -> cropped, augmented batches."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from smallnet_lit.data.augment import Photometric
from smallnet_lit.data.crop import CropConfig
from smallnet_lit.data.faces import FaceDataset, FaceSource


class FaceDataModule(L.LightningDataModule):
    """`train`, `val` and `test` are FaceSources (built by Hydra from `_target_`).
    `train_samples_per_epoch` draws that many training faces per epoch (with
    replacement, each freshly augmented); None means one pass over the training faces."""

    def __init__(
        self,
        train: FaceSource | None,
        val: FaceSource | None,
        test: FaceSource | None = None,
        input_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        train_crop: CropConfig | dict | None = None,
        eval_crop: CropConfig | dict | None = None,
        photometric: Photometric | None = None,
        train_samples_per_epoch: int | None = None,
        seed: int = 0,
        scheme: str | None = None,
        attribute_names: tuple[str, ...] | list[str] = (),
        root: str | None = None,
        all: FaceSource | None = None,  # noqa: A002 - the split's name, as `split=all` says
    ) -> None:
        """`all`: every face of the data (eval's split=all), built only when asked for.
        `scheme` and `attribute_names` state what the config promises (train.py gives them
        to the model); the scheme is checked against the sources here. `input_size` is the
        network's (train.py: the model config's; eval: the checkpoint's).
        `root` is the data folder the sources read (shared by their configs)."""
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if train_samples_per_epoch is not None and train_samples_per_epoch < 1:
            raise ValueError(f"data.train_samples_per_epoch must be positive or null, got {train_samples_per_epoch}")
        schemes = {s.scheme.name for s in (train, val, test, all) if s is not None}
        if len(schemes) > 1:
            raise ValueError(f"the train/val/test sources use different landmark schemes: {sorted(schemes)}")
        self.sources = {"train": train, "val": val, "test": test, "all": all}
        if not any(s is not None for s in self.sources.values()):
            raise ValueError("the data config gives no train, val or test source")
        actual = self.scheme
        if scheme is not None and scheme != actual.name:
            raise ValueError(f"data.scheme={scheme!r} but the data's landmarks follow {actual.name!r}")
        self.attribute_names = tuple(attribute_names)
        self.root = root
        self.input_size, self.batch_size, self.num_workers = input_size, batch_size, num_workers
        self.train_crop = _crop(train_crop)
        self.eval_crop = _crop(eval_crop)
        self.photometric = photometric
        self.train_samples_per_epoch = train_samples_per_epoch
        self.seed = seed

    @property
    def scheme(self):
        return next(s.scheme for s in self.sources.values() if s is not None)

    def dataset(self, split: str) -> FaceDataset:
        source = self.sources[split]
        if source is None:
            raise ValueError(f"this data config has no {split!r} split")
        if split == "train":
            return FaceDataset(source, self.input_size, self.train_crop, True, self.photometric, self.seed)
        return FaceDataset(source, self.input_size, self.eval_crop)

    def source_names(self, split: str) -> tuple[str, ...]:
        """Names of the parts of a split's source, when it mixes several (else ())."""
        return tuple(getattr(self.sources.get(split), "names", ()))

    def setup(self, stage: str | None = None) -> None:
        # Record which photos went to which split, in the run dir, for reproducibility.
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        manifest = {split: getattr(src, "split_groups", None) for split, src in self.sources.items() if src is not None}
        manifest = {k: v for k, v in manifest.items() if v is not None}
        if manifest:
            path = Path(self.trainer.default_root_dir) / "data_split.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"root": self.root, **manifest}, indent=1))

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        ds.epoch = self.trainer.current_epoch if self.trainer is not None else 0
        weights = ds.source.sample_weights() if hasattr(ds.source, "sample_weights") else None
        rank, world = _rank_and_world(self.trainer)
        sampler = EpochDraws(len(ds), self.train_samples_per_epoch, weights, self.seed, ds.epoch, rank, world)
        # A ragged last batch is dropped, unless it is the only one (tiny data sets).
        return self._loader(ds, sampler=sampler, drop_last=len(sampler) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.dataset("test"))

    def _eval_loader(self, ds: FaceDataset) -> DataLoader:
        # Under DDP every face is evaluated exactly once: a DistributedSampler would pad
        # the last rank with repeated faces and bias the metrics.
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return self._loader(ds, sampler=ShardSampler(ds, dist.get_rank(), dist.get_world_size()))
        return self._loader(ds)

    def _loader(self, ds: FaceDataset, **kwargs) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )


class ShardSampler(DistributedSampler):
    """Rank r of w evaluates faces r, r + w, r + 2w, ...: no padding, no repeats (ranks may
    get one face more or less; metric states are gathered, so that is harmless)."""

    def __init__(self, dataset, rank: int, world_size: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), world_size))

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def _crop(cfg: CropConfig | dict | None) -> CropConfig:
    if cfg is None:
        return CropConfig()
    return cfg if isinstance(cfg, CropConfig) else CropConfig(**cfg)


def _rank_and_world(trainer: L.Trainer | None) -> tuple[int, int]:
    if trainer is not None:
        return trainer.global_rank, trainer.world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochDraws(DistributedSampler):
    """The training faces of one epoch, seeded by (seed, epoch): `total` draws by weight with
    replacement (a weighted mix of sources), or uniform with replacement (`total` set), or
    shuffled passes without (`total` None: one pass). Under DDP rank r takes draws r, r + w,
    ...: an epoch has the recipe's size and the same faces on any number of processes (a
    DistributedSampler, so Lightning does not wrap it again; its own wrapper would replace a
    RandomSampler by one pass over the faces and lose `train_samples_per_epoch`). On one
    process the draws are those of torch's WeightedRandomSampler / RandomSampler."""

    def __init__(
        self,
        n_faces: int,
        total: int | None,
        weights=None,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        # DistributedSampler.__init__ wants a dataset and a process group: set its fields here.
        self.n_faces, self.weights = n_faces, None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.total_size = total if total is not None else n_faces
        self.replacement = total is not None or weights is not None
        self.seed, self.epoch, self.rank, self.num_replicas = seed, epoch, rank, world_size
        self.shuffle, self.drop_last = True, False
        self.num_samples = len(range(rank, self.total_size, world_size))

    def _draws(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n, total = self.n_faces, self.total_size
        if self.weights is not None:
            return torch.multinomial(self.weights, total, True, generator=g)
        if self.replacement:  # as RandomSampler draws them: in chunks of 32
            chunks = [torch.randint(n, (32,), dtype=torch.int64, generator=g) for _ in range(total // 32)]
            chunks.append(torch.randint(n, (total % 32,), dtype=torch.int64, generator=g))
            return torch.cat(chunks)
        return torch.randperm(n, generator=g)

    def __iter__(self):
        return iter(self._draws()[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
