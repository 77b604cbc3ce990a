"""The decoding diagnosis (`python -m smallnet_lit.tools.decoding`): its known-cell reading
and its figures on the same protocol as `eval`."""

import torch

from smallnet_lit.model.codec import HeadOutput
from smallnet_lit.tools.decoding import known_cell_points, run
from tests.helpers.runs import run_eval


def test_known_cell_points_read_the_ground_truth_cell():
    # 1 landmark on a 2x2 grid at stride 10; truth at (14, 6): cell (row 0, col 1).
    scores = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]]]])  # the peak is in the wrong cell (0, 0)
    offsets = torch.zeros(1, 1, 2, 2, 2)
    offsets[0, 0, :, 0, 1] = torch.tensor([-0.1, 0.1])  # cell (0, 1) reads (14, 6)
    out = HeadOutput(scores, offsets, torch.zeros(1, 1, 1, 2, 2), stride=10)
    known, hit = known_cell_points(out, torch.tensor([[[14.0, 6.0]]]))
    torch.testing.assert_close(known, torch.tensor([[[14.0, 6.0]]]))
    assert hit.tolist() == [[False]]


def test_diagnosis_matches_eval_figures(make_cfg, ibug_root, tmp_path):
    overrides = ["data=ibug300w", f"data.root={ibug_root}", "split=all", f"data.cache.dir={tmp_path / 'c'}"]
    figures = {}
    for mode in ("soft", "argmax"):
        result, _ = run_eval(make_cfg, tmp_path / mode, "smallnet_300w", [*overrides, f"decode={mode}"])
        figures[mode] = result["all/nme"]
    result, faces = run(make_cfg(["ckpt_path=smallnet_300w", *overrides], name="eval", tiny=False))
    assert faces == 20
    for mode in ("soft", "argmax"):
        assert abs(result[f"nme/{mode}"] - figures[mode]) < 1e-5
    assert 0 < result["cell_hit_rate"] <= 1
    # Where the peak is the ground-truth cell, argmax reads that cell: no worse than known.
    assert result["nme/known_cell"] <= result["nme/argmax"] + 1e-6


def test_neighbour_models_are_also_read_from_their_own_maps_alone():
    from types import SimpleNamespace

    from smallnet_lit.model.landmarks import IBUG68
    from smallnet_lit.model.net import SmallNet
    from smallnet_lit.tools.decoding import diagnose

    torch.manual_seed(0)
    net = SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], neighbours=3).eval()
    batch = {"image": torch.randn(2, 3, 64, 64), "points": torch.rand(2, 68, 2) * 63}
    result = diagnose(SimpleNamespace(net=net), [batch], IBUG68.eye_corners)
    assert {"nme/soft_own_only", "nme/argmax_own_only"} <= set(result)
    # random neighbour maps move the points: the two readings differ
    assert result["nme/soft"] != result["nme/soft_own_only"]


def test_eval_reads_smaller_crops_upsampled_and_maps_the_points_back(make_cfg, ibug_root, tmp_path):
    import json

    import pytest

    overrides = ["data=ibug300w", f"data.root={ibug_root}", "split=all", f"data.cache.dir={tmp_path / 'c'}"]
    native, _ = run_eval(make_cfg, tmp_path / "native", "smallnet_300w", overrides)
    same, _ = run_eval(make_cfg, tmp_path / "same", "smallnet_300w", [*overrides, "read_size=128"])
    assert same["all/nme"] == native["all/nme"]
    _, out = run_eval(make_cfg, tmp_path / "small", "smallnet_300w", [*overrides, "read_size=64"])
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    native_rows = [json.loads(line) for line in (tmp_path / "native" / "predictions.jsonl").read_text().splitlines()]
    # the same faces, in photo pixels: the points land where the full-size reading puts them,
    # give or take what half the pixels lose (a mapping off by the crop's scale would be far off)
    assert [r["face"] for r in rows] == [r["face"] for r in native_rows]
    pairs = zip(rows, native_rows, strict=True)
    moved = torch.stack([torch.tensor(r["points"]) - torch.tensor(n["points"]) for r, n in pairs])
    eyes = torch.stack([torch.tensor(n["points"])[[36, 45]] for n in native_rows])
    inter_ocular = (eyes[:, 0] - eyes[:, 1]).norm(dim=-1)
    # here 0.4-4.5% of the eye distance per face, 1% typical; unscaled points would move by half a face
    assert (moved.norm(dim=-1).median(1).values / inter_ocular).median() < 0.03
    for bad in ("read_size=256", "read_size=8"):
        with pytest.raises(ValueError, match="read_size"):
            run_eval(make_cfg, tmp_path / "bad", "smallnet_300w", [*overrides, bad])
