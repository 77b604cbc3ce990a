"""Several face sets trained as one (data=faces68): each source's own split, weights, missing
or empty sources named, per-source validation."""

import json
from pathlib import Path

import numpy as np
import pytest

from smallnet_lit.data.datamodule import FaceDataModule
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.mix import SourceMix, ibug_mix
from smallnet_lit.train import train
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


def test_source_mix_rejects_mixed_schemes(ibug_root):
    from smallnet_lit.data.synthetic import SyntheticFaces

    with pytest.raises(ValueError, match="different landmark schemes"):
        SourceMix({"a": IbugFaces(ibug_root), "b": SyntheticFaces(num_faces=2, seed=1)})
