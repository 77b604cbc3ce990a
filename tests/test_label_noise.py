import json

import numpy as np
import pytest

from smallnet_lit.tools import label_noise
from smallnet_lit.tools.label_noise import aligned_change, frame_pairs, summarize

MEAN_FACE = np.random.default_rng(0).uniform(20, 80, (68, 2))


def similarity(points, angle, scale, shift):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return points @ np.array([[c, s], [-s, c]]) + shift


def write_pts(path, points):
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def test_head_motion_is_not_change_but_moved_points_are():
    moved = similarity(MEAN_FACE, 0.3, 1.4, (5.0, -7.0))
    assert aligned_change(MEAN_FACE, moved, (36, 45)) < 1e-9
    nudged = moved.copy()
    nudged[:34] += (0.0, 2.0)  # half the points 2 px down: change, whatever the alignment
    assert aligned_change(MEAN_FACE, nudged, (36, 45)) > 0.5 / np.linalg.norm(nudged[36] - nudged[45])


def test_noisy_labels_on_still_frames_give_their_noise_as_the_floor(tmp_path):
    """Labels of three still clips, each frame labelled again with 1-px noise; the model's points
    move with the head only. The floor comes out near the noise's true mean error, the model's
    change near zero, and frames of other clips or sources are never paired."""
    rng = np.random.default_rng(1)
    rows = []
    for clip in ("Ann_0", "Ann_1", "Bob_4"):
        for frame in range(3):
            name = f"{clip}{frame}.jpg"
            head = similarity(MEAN_FACE, 0.05 * frame, 1.0 + 0.01 * frame, (frame, 0.0))
            write_pts(tmp_path / name.replace(".jpg", ".pts"), head + rng.normal(0, 1.0, head.shape))
            rows.append({"face": f"ytf68:{name}", "points": head.tolist(), "nme": 0.05, "yaw": 10.0})
    rows.append({"face": "ibug300w:Ann_02.jpg", "points": MEAN_FACE.tolist(), "nme": 0.01, "yaw": 40.0})
    pairs = frame_pairs(rows, tmp_path, "ytf68", r"(.+)\d")
    assert sorted(p["frames"] for p in pairs) == [
        ("Ann_00.jpg", "Ann_01.jpg"),
        ("Ann_01.jpg", "Ann_02.jpg"),
        ("Ann_10.jpg", "Ann_11.jpg"),
        ("Ann_11.jpg", "Ann_12.jpg"),
        ("Bob_40.jpg", "Bob_41.jpg"),
        ("Bob_41.jpg", "Bob_42.jpg"),
    ]
    assert max(p["model_change"] for p in pairs) < 1e-9
    frontal, turned = summarize(pairs, still=0.02)
    iod = np.linalg.norm(MEAN_FACE[36] - MEAN_FACE[45])
    true_error = 1.0 * np.sqrt(np.pi / 2) / iod  # mean length of 2D normal noise, sigma 1 px
    assert frontal["pairs"] == frontal["still_pairs"] == 6 and turned["pairs"] == 0
    assert frontal["floor"] == pytest.approx(true_error, rel=0.25)
    # nothing is still when the threshold is below every model change
    assert np.isnan(summarize(pairs, still=0.0)[0]["floor"])


def test_cli_prints_the_table_and_names_bad_files(tmp_path, capsys):
    evals = tmp_path / "eval"
    evals.mkdir()
    assert label_noise.main([str(evals), str(tmp_path)]) == 2
    assert "predictions.jsonl" in capsys.readouterr().err
    (evals / "predictions.jsonl").write_text('{"face": "ytf68:Cy_00.jpg", "points": [], "nme": 0.1}\n{"face": ')
    assert label_noise.main([str(evals), str(tmp_path)]) == 2
    assert "predictions.jsonl:2: not an eval prediction row" in capsys.readouterr().err
    rows = [{"face": f"ytf68:Cy_0{i}.jpg", "points": MEAN_FACE.tolist(), "nme": 0.04, "yaw": 5.0} for i in range(2)]
    (evals / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    write_pts(tmp_path / "Cy_00.pts", MEAN_FACE)
    write_pts(tmp_path / "Cy_01.pts", MEAN_FACE[:60])
    assert label_noise.main([str(evals), str(tmp_path)]) == 2
    assert "Cy_01.pts: 60 points, expected 68" in capsys.readouterr().err
    write_pts(tmp_path / "Cy_01.pts", MEAN_FACE + 0.5)
    assert label_noise.main([str(evals), str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 pairs of consecutive frames" in out and "0-30" in out
