"""predicted_nme: each face's error estimate from its sigma, calibrated on a validation split,
stored with the model and reported by predict, the API, ONNX exports and eval."""

import json

import numpy as np
import pytest

from smallnet_lit.model.uncertainty import (
    auroc,
    face_uncertainty,
    fit_error_calibration,
    predicted_nme,
    spearman,
    uncertainty_report,
)
from smallnet_lit.predict import main as predict_main
from tests.helpers.faces import synthetic_photo


def test_auroc_and_spearman_match_their_definitions():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.8])
    positives = np.array([False, False, True, True, False])
    # pairs (positive above negative): 0.35>0.1 yes, 0.35>0.4 no, 0.35>0.8 no; 0.8>0.1, 0.8>0.4, tie 0.8 = 0.5
    assert auroc(scores, positives) == pytest.approx((1 + 0 + 0 + 1 + 1 + 0.5) / 6)
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert np.isnan(auroc(scores, np.zeros(5, bool)))


def test_the_calibration_recovers_a_power_law_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    u = rng.uniform(0.01, 0.2, 500)
    nme = 0.7 * u**0.9 * np.exp(rng.normal(0, 0.05, 500))
    cal = fit_error_calibration(u, nme, "test")
    assert cal["b"] == pytest.approx(0.9, abs=0.03) and np.exp(cal["a"]) == pytest.approx(0.7, rel=0.1)
    estimate = predicted_nme(u, cal)
    assert spearman(estimate, u) == pytest.approx(1.0) and predicted_nme(u, None) is None
    report = uncertainty_report(u, nme)
    assert report["auroc_failure"] > 0.95 and report["nme_keep_80"] < report["nme_keep_90"] < nme.mean()
    with pytest.raises(ValueError, match="at least 10 faces"):
        fit_error_calibration(u[:5], nme[:5])


def test_face_uncertainty_is_the_rms_sigma_over_the_eye_distance():
    points = np.zeros((1, 68, 2))
    points[0, 45] = [50.0, 0.0]  # outer eye corners 50 px apart
    sigma = np.full((1, 68), 2.0)
    sigma[0, 0] = np.sqrt(4 + 68 * 5)  # rms over the points: sqrt(4 + 5) = 3
    assert face_uncertainty(points, sigma, (36, 45))[0] == pytest.approx(3.0 / 50)


@pytest.fixture
def calibrated(checkpoint, tmp_path):
    """The tiny checkpoint with an error calibration stored by smallnet-export --slim."""
    from smallnet_lit.export import main as export_main

    cal = tmp_path / "error_calibration.json"
    # a = -6: the untrained tiny model's large sigmas still map to estimates well below 1
    cal.write_text(json.dumps({"a": -6.0, "b": 0.85, "faces": 100, "fitted_on": "test"}))
    out = tmp_path / "calibrated.ckpt"
    assert export_main([str(checkpoint), "--slim", str(out), "--error-calibration", str(cal)]) == 0
    return out


def test_predicted_nme_travels_with_the_model_to_api_json_and_onnx(calibrated, tmp_path):
    import smallnet_lit as sl
    from smallnet_lit.export import main as export_main

    truth = synthetic_photo(tmp_path / "face.jpg")
    box = [*truth.min(0), *truth.max(0)]
    face = sl.load(calibrated)(tmp_path / "face.jpg", boxes=box)[0]
    u = face_uncertainty(face.points[None], face.sigma[None], (36, 45))[0]
    assert face.predicted_nme == pytest.approx(np.exp(-6.0) * u**0.85)
    assert face.to_json()["predicted_nme"] == round(face.predicted_nme, 4)
    assert export_main([str(calibrated), "--onnx", str(tmp_path / "m.onnx")]) == 0
    from_onnx = sl.load(tmp_path / "m.onnx")(tmp_path / "face.jpg", boxes=box)[0]
    assert from_onnx.predicted_nme == pytest.approx(face.predicted_nme, rel=1e-3)


def test_max_predicted_nme_leaves_out_and_lists_uncertain_faces(calibrated, checkpoint, tmp_path):
    truth = synthetic_photo(tmp_path / "face.jpg")
    (tmp_path / "boxes.json").write_text(json.dumps({"face.jpg": [[*truth.min(0).tolist(), *truth.max(0).tolist()]]}))
    args = [str(tmp_path / "face.jpg"), "--boxes", str(tmp_path / "boxes.json")]
    assert predict_main([*args, "--model", str(calibrated), "--out", str(tmp_path / "a")]) == 0
    estimate = json.loads((tmp_path / "a" / "predictions.jsonl").read_text())["faces"][0]["predicted_nme"]
    assert 0 < estimate < 0.4
    for limit, kept in ((estimate * 2, 1), (estimate / 2, 0)):
        out = tmp_path / f"o{kept}"
        assert (
            predict_main([*args, "--model", str(calibrated), "--out", str(out), "--max-predicted-nme", str(limit)]) == 0
        )
        row = json.loads((out / "predictions.jsonl").read_text())
        assert len(row["faces"]) == kept and len(row.get("uncertain_faces", [])) == 1 - kept
    # a model without a calibration cannot filter: a usage error before any output
    assert (
        predict_main([*args, "--model", str(checkpoint), "--out", str(tmp_path / "x"), "--max-predicted-nme", "0.1"])
        == 2
    )
    with pytest.raises(SystemExit):
        predict_main([*args, "--model", str(calibrated), "--out", str(tmp_path / "y"), "--max-predicted-nme", "8"])


def test_shipped_models_carry_an_error_calibration():
    from smallnet_lit.model.checkpoints import WEIGHTS_DIR, read_checkpoint

    for path in sorted(WEIGHTS_DIR.glob("*.ckpt")):
        cal = read_checkpoint(path)["hyper_parameters"]["error_calibration"]
        assert 0.5 < cal["b"] < 1.5 and cal["faces"] >= 500, path.name


def test_inference_starts_without_lightning_hydra_albumentations_or_torch(tmp_path):
    """sl.load of a shipped model runs ONNX Runtime: a fresh interpreter imports none of them."""
    import subprocess
    import sys

    synthetic_photo(tmp_path / "face.jpg")
    code = (
        "import sys, smallnet_lit as sl\n"
        f"faces = sl.load('smallnet_300w')({str(tmp_path / 'face.jpg')!r})\n"
        "print(sorted(m for m in ('lightning', 'hydra', 'albumentations', 'torch', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    code_torch = code.replace("sl.load('smallnet_300w')", "sl.load('smallnet_300w', backend='torch')")
    out = subprocess.run([sys.executable, "-c", code_torch], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['torch']"  # the checkpoint, still without Lightning


def test_backends_choose_the_runtime_and_refuse_what_does_not_fit(checkpoint, tmp_path):
    from smallnet_lit.inference.predictor import WEIGHTS_DIR, runtime_file

    assert runtime_file("smallnet_300w", None) == WEIGHTS_DIR / "smallnet_300w.onnx"
    assert runtime_file("smallnet_300w", "torch") == WEIGHTS_DIR / "smallnet_300w.ckpt"
    assert runtime_file(checkpoint, None) == checkpoint
    with pytest.raises(ValueError, match="backend onnx needs an ONNX file"):
        runtime_file(checkpoint, "onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        runtime_file("smallnet_300w", "tensorrt")


def test_shipped_onnx_and_checkpoint_agree(tmp_path):
    """weights/NAME.onnx is the int8 export of weights/NAME.ckpt."""
    import smallnet_lit as sl

    truth = synthetic_photo(tmp_path / "face.jpg", size=240)
    box = [*truth.min(0), *truth.max(0)]
    for name, size in (
        ("smallnet_300w", 128),
        ("smallnet_300w_fast", 128),
        ("smallnet_300w_small", 96),
        ("smallnet_300w_tiny", 64),
    ):
        onnx, torch_ = (sl.load(name, backend=b)(tmp_path / "face.jpg", boxes=box)[0] for b in ("onnx", "torch"))
        iod = np.linalg.norm(torch_.points[36] - torch_.points[45])
        # int8 on a drawn face, far from the training photos: within 2% of the eye distance on average
        # for a 128-px input; its rounding is in input pixels, so a smaller input's tolerance is larger
        assert np.linalg.norm(onnx.points - torch_.points, axis=1).mean() < 0.02 * 128 / size * iod, name
        assert onnx.predicted_nme == pytest.approx(torch_.predicted_nme, rel=0.1)
