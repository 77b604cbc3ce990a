"""Training and eval runs as a user starts them: their own run dirs, settings refused before any
work, an interrupt that keeps the first epoch, another data config, eval of a folder."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from smallnet_lit.train import train
from tests.helpers.faces import SHARED_DATA
from tests.helpers.runs import run_eval


@pytest.mark.parametrize("config", ["train", "eval"])
def test_runs_started_in_the_same_second_get_their_own_run_dirs(config):
    """The run dir holds the process id beside the time: two evals of one second keep both metrics.json."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from smallnet_lit.training.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(config_name=config, return_hydra_config=True)
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    assert run_dir.endswith(f"_{os.getpid()}")


def test_zero_epochs_is_refused_before_any_work(make_cfg):
    with pytest.raises(ValueError, match="max_epochs must be at least 1"):
        train(make_cfg(["trainer.max_epochs=0"]))


def test_an_interrupt_in_the_first_epoch_leaves_last_ckpt(make_cfg, tmp_path):
    """Ctrl-C before the first epoch ends: last.ckpt is written, so the run can resume."""
    import lightning as L

    class CtrlC(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 2:
                raise KeyboardInterrupt

    from smallnet_lit.training import instantiate

    cfg = make_cfg(["data.train_samples_per_epoch=64"])
    original = instantiate.callbacks_from
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("smallnet_lit.train.callbacks_from", lambda c: [*original(c), CtrlC()])
        with pytest.raises(SystemExit):
            train(cfg)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()


def test_demo_experiment_works_with_another_data_config(make_cfg, tmp_path):
    from tests.helpers.faces import write_wflw

    root = write_wflw(tmp_path / "WFLW", 6, 4)
    cfg = make_cfg(["+experiment=demo", "data=wflw", f"data.root={root}", "debug=fdr"])
    assert "val/nme" in train(cfg)


@pytest.mark.shared_data
def test_eval_scores_every_face_of_a_folder_with_a_shipped_model_name(make_cfg, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for pts in sorted((SHARED_DATA / "300w-train" / "afw").glob("*.pts"))[:12]:
        for suffix in (".pts", ".jpg"):
            shutil.copy(pts.with_suffix(suffix), folder / pts.with_suffix(suffix).name)
    mean_face = f"mean_face={SHARED_DATA / '3d' / 'mean_face_68.txt'}"
    result, out = run_eval(
        make_cfg, tmp_path / "eval", "smallnet_300w", ["data=ibug300w", f"data.root={folder}", mean_face]
    )
    assert json.loads((out / "metrics.json").read_text())["faces"] == 12
    assert 0 < result["all/nme"] < 0.1
    # per yaw bin (the shared mean 3D face fitted to the annotations): every face in one bin
    assert sum(result[f"all/yaw_{b}/faces"] for b in ("0_30", "30_60", "60_90")) == 12
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(0 <= r["yaw"] <= 90 for r in rows)
    # from a detector's boxes, as smallnet-predict crops: found faces + misses = all
    for detector, least_found in (("haar", 7), ("mtcnn", 11)):
        detected, out = run_eval(
            make_cfg,
            tmp_path / detector,
            "smallnet_300w",
            ["data=ibug300w", f"data.root={folder}", f"crop_from={detector}"],
        )
        found = json.loads((out / "metrics.json").read_text())["faces"]
        assert found >= least_found and found == round(12 * (1 - detected["all/not_found"]))
        assert detected["all/nme"] < 0.15
    with pytest.raises(ValueError, match="crop_from must be"):
        run_eval(make_cfg, tmp_path / "bad", "smallnet_300w", ["data=ibug300w", f"data.root={folder}", "crop_from=x"])


def test_paired_comparison_of_two_evals(tmp_path, capsys):
    """tools.paired: face-by-face NME difference, bootstrap interval, yaw filter, part, clear errors."""
    from smallnet_lit.tools.paired import main as paired_main

    for name, shift in (("a", 0.0), ("b", 0.01)):
        (tmp_path / name).mkdir()
        rows = [{"face": f"src:{i}", "nme": 0.05 + 0.001 * i + shift, "yaw": 10.0 * i} for i in range(6)]
        (tmp_path / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert paired_main([str(tmp_path / "a"), str(tmp_path / "b"), "--min-yaw", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 faces: NME a - b = -1.000%") and "a better on 3 of 3" in out
    # --part: one face part's NME; a run evaluated before part_nme existed is named, not misread
    for name, shift in (("pa", 0.0), ("pb", 0.02)):
        (tmp_path / name).mkdir()
        rows = [{"face": f"src:{i}", "nme": 0.05, "part_nme": {"left_eye": 0.03 + shift}} for i in range(4)]
        (tmp_path / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert paired_main([str(tmp_path / "pa"), str(tmp_path / "pb"), "--part", "left_eye"]) == 0
    assert capsys.readouterr().out.startswith("4 faces: NME (left_eye) pa - pb = -2.000%")
    assert paired_main([str(tmp_path / "pa"), str(tmp_path / "a"), "--part", "left_eye"]) == 2
    assert "a/predictions.jsonl: no part 'left_eye' (its parts: none" in capsys.readouterr().err
    (tmp_path / "pb" / "predictions.jsonl").write_text(
        json.dumps(rows[0]) + "\n" + json.dumps({"face": "src:1", "nme": 0.05}) + "\n"
    )
    assert paired_main([str(tmp_path / "pb"), str(tmp_path / "pa"), "--part", "left_eye"]) == 2
    assert "pb/predictions.jsonl:2: no NME of part 'left_eye' in this row" in capsys.readouterr().err
    (tmp_path / "b" / "predictions.jsonl").write_text("{not json\n")
    assert paired_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "predictions.jsonl:1: not an eval prediction row" in capsys.readouterr().err


def test_eval_reports_the_nme_of_each_face_part(checkpoint, make_cfg, tmp_path):
    """Each face's part_nme weighted by the parts' point counts is its NME (the parts cover every
    point once), and metrics.json has each part's mean."""
    from smallnet_lit.model.landmarks import IBUG68
    from tests.helpers.faces import write_ibug

    faces = write_ibug(tmp_path / "faces", n_photos=4, faces_per_photo=1)
    data = ["data=ibug300w", f"data.root={faces}", "split=all", f"data.cache.dir={tmp_path / 'cache'}"]
    result, out = run_eval(make_cfg, tmp_path / "eval", checkpoint, data)
    assert sorted(i for index in IBUG68.parts.values() for i in index) == list(range(68))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        weighted = sum(row["part_nme"][name] * len(index) for name, index in IBUG68.parts.items()) / 68
        assert weighted == pytest.approx(row["nme"], abs=1e-5)
    for name in IBUG68.parts:
        assert result[f"all/part/{name}/nme"] == pytest.approx(np.mean([r["part_nme"][name] for r in rows]))
    assert result["all/part/left_eye/nme"] != result["all/part/contour/nme"]
