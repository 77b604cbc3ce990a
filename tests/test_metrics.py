import numpy as np
import pytest
import torch

from smallnet_lit.model.metrics import FaceAlignmentMetrics, auc, ced_curve, failure_rate, nme_per_face


def faces():
    # eye corners are points 0 and 1, 10 px apart
    target = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]], [[0.0, 0.0], [20.0, 0.0], [10.0, 10.0]]])
    pred = target.clone()
    pred[0, 0] += torch.tensor([0.3, 0.4])  # error 0.5
    pred[0, 2] += torch.tensor([1.0, 0.0])  # error 1.0 -> face 0: (0.5 + 0 + 1) / 3 / 10 = 0.05
    pred[1, 1] += torch.tensor([0.0, 9.0])  # error 9 -> face 1: 9 / 3 / 20 = 0.15
    return pred, target


def test_nme_is_mean_point_error_over_interocular_distance():
    pred, target = faces()
    torch.testing.assert_close(nme_per_face(pred, target, (0, 1)), torch.tensor([0.05, 0.15]))


def test_failure_rate_and_auc_hand_computed():
    nme = torch.tensor([0.05, 0.15])
    assert failure_rate(nme).item() == pytest.approx(0.5)
    # CED: 0 below 0.05, 1/2 from 0.05 to 0.10 -> area 0.025, / 0.10 = 0.25
    assert auc(nme).item() == pytest.approx(0.25)


def test_exact_auc_matches_a_fine_numerical_integral_of_the_ced():
    nme = np.random.default_rng(0).gamma(2.0, 0.02, 500)
    x, y = ced_curve(nme, 0.10, steps=100001)
    numeric = np.trapezoid(y, x) / 0.10
    assert auc(torch.tensor(nme)).item() == pytest.approx(numeric, abs=1e-4)


def test_metric_object_accumulates_batches_and_attribute_subsets():
    pred, target = faces()
    m = FaceAlignmentMetrics((0, 1), attribute_names=("pose", "blur"))
    m.update(pred[:1], target[:1], torch.tensor([[1.0, 0.0]]))
    m.update(pred[1:], target[1:], torch.tensor([[1.0, 0.0]]))
    out = m.compute()
    assert out["nme"].item() == pytest.approx(0.10)
    assert out["fr"].item() == pytest.approx(0.5)
    assert out["auc"].item() == pytest.approx(0.25)
    assert out["nme_pose"].item() == pytest.approx(0.10)
    assert torch.isnan(out["nme_blur"])  # no blurred face: not a zero error


def test_coincident_eye_corners_are_an_error():
    t = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="inter-ocular distance is zero"):
        nme_per_face(t, t, (0, 1))


def test_uncertainty_calibration_of_a_true_gaussian():
    from smallnet_lit.model.metrics import uncertainty_calibration

    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 3.0, 200_000)
    errors = np.linalg.norm(rng.normal(0, 1, (200_000, 2)) * sigma[:, None], axis=1)
    cal = uncertainty_calibration(errors, sigma)
    assert cal["within_1_sigma"] == pytest.approx(cal["expected_within_1_sigma"], abs=0.005)
    assert cal["within_2_sigma"] == pytest.approx(cal["expected_within_2_sigma"], abs=0.005)
    assert cal["spearman_sigma_error"] > 0.4
    assert uncertainty_calibration(errors, rng.permutation(sigma))["spearman_sigma_error"] == pytest.approx(0, abs=0.01)


def test_yaw_report_counts_each_face_in_its_bin_per_source():
    import numpy as np

    from smallnet_lit.training.evaluate import yaw_report

    yaws = np.array([5.0, 29.9, 30.0, 45.0, 61.0, np.nan])
    nme = np.array([0.02, 0.03, 0.05, 0.07, 0.2, 0.04])
    groups = np.array([0, 0, 1, 1, 1, 0])
    r = yaw_report(yaws, nme, groups, ["a", "b"], "val", 0.1)
    assert r["val/yaw_0_30/faces"] == 2 and r["val/yaw_30_60/faces"] == 2 and r["val/yaw_60_90/faces"] == 1
    assert r["val/yaw_30+/faces"] == 3 and r["val/yaw_30+/nme"] == pytest.approx((0.05 + 0.07 + 0.2) / 3)
    assert r["val/yaw_30+/fr"] == pytest.approx(1 / 3)
    assert r["val/a/yaw_30+/faces"] == 0 and np.isnan(r["val/a/yaw_30+/nme"])
    assert r["val/b/yaw_0_30/faces"] == 0 and r["val/b/yaw_30+/faces"] == 3
