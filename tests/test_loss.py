import math

import pytest
import torch

from smallnet_lit.model.codec import HeadOutput, encode
from smallnet_lit.model.loss import DualLoss, log1mexp
from tests.helpers.heads import neighbour_maps_at_truth


def head(scores, offsets=None, log_delta=None, stride=10):
    """A 1-image, 1-landmark head over an h x w grid."""
    scores = torch.tensor(scores, dtype=torch.float32)[None, None]
    h, w = scores.shape[-2:]
    offsets = torch.zeros(1, 1, 2, h, w) if offsets is None else offsets
    log_delta = torch.zeros(1, 1, 1, h, w) if log_delta is None else log_delta
    return HeadOutput(scores, offsets, log_delta, stride)


def test_codec_encodes_cell_index_offset_and_inside():
    pts = torch.tensor([[[25.0, 5.0], [-1.0, 3.0], [9.99, 19.0]]])
    cell, offset, inside = encode(pts, stride=10, grid_hw=(2, 3))
    assert cell.tolist() == [[2, 0, 3]]
    torch.testing.assert_close(offset[0, 0], torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(offset[0, 2], torch.tensor([0.499, 0.4]))
    assert inside.tolist() == [[True, False, True]]


def test_confidence_loss_on_uniform_scores_is_log2_for_two_cells():
    # p = [0.5, 0.5]: 1/2 * -log 0.5 + 1/2 * -log(1 - 0.5) = log 2
    _, parts = DualLoss()(head([[0.0, 0.0]]), torch.tensor([[[5.0, 5.0]]]))
    assert parts["loss_conf"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert parts["loss_loc"].item() == pytest.approx(0.0, abs=1e-6)  # t = t_hat = 0, delta = 1


def test_confidence_loss_hand_computed_for_four_cells():
    scores = [[1.0, 2.0], [0.0, -1.0]]
    p = torch.tensor([1.0, 2.0, 0.0, -1.0]).softmax(0)
    # ground truth in cell 2 (row 1, col 0)
    expected = 0.5 * -math.log(p[2]) + 0.5 * -(math.log(1 - p[0]) + math.log(1 - p[1]) + math.log(1 - p[3])) / 3
    _, parts = DualLoss()(head(scores), torch.tensor([[[5.0, 15.0]]]))
    assert parts["loss_conf"].item() == pytest.approx(expected, rel=1e-5)


def test_location_loss_is_gaussian_nll_with_predicted_delta():
    # t = (0.25, -0.25) cell units, t_hat = 0, delta = 0.5:
    # per axis 0.0625 / (2 * 0.25) + log 0.5; summed over x and y.
    log_delta = torch.full((1, 1, 1, 1, 2), math.log(0.5))
    pts = torch.tensor([[[7.5, 2.5]]])  # cell 0 centre (5, 5) + (2.5, -2.5) px at stride 10
    _, parts = DualLoss()(head([[0.0, 0.0]], log_delta=log_delta), pts)
    assert parts["loss_loc"].item() == pytest.approx(2 * (0.125 + math.log(0.5)), rel=1e-5)


def test_fixed_delta_is_half_squared_error():
    offsets = torch.zeros(1, 1, 2, 1, 2)
    offsets[0, 0, :, 0, 1] = torch.tensor([0.1, 0.3])
    pts = torch.tensor([[[15.0, 5.0]]])  # cell 1 centre, t = 0
    _, parts = DualLoss(fixed_delta=True)(head([[0.0, 0.0]], offsets=offsets), pts)
    assert parts["loss_loc"].item() == pytest.approx(0.5 * (0.01 + 0.09), rel=1e-5)


def test_total_is_weighted_sum_and_invalid_points_are_ignored():
    out = head([[0.3, -0.2]], log_delta=torch.full((1, 1, 1, 1, 2), -0.5))
    pts = torch.tensor([[[7.0, 3.0]]])
    total, parts = DualLoss(alpha=2.0, beta=0.5)(out, pts)
    assert total.item() == pytest.approx(2.0 * parts["loss_conf"].item() + 0.5 * parts["loss_loc"].item(), rel=1e-6)
    total_masked, _ = DualLoss()(out, pts, valid=torch.tensor([[False]]))
    assert total_masked.item() == 0.0


@pytest.mark.parametrize(("error", "delta", "direction"), [(0.45, 0.1, "grow"), (0.05, 0.5, "shrink")])
def test_gradient_moves_delta_toward_the_error(error, delta, direction):
    log_delta = torch.full((1, 1, 1, 1, 1), math.log(delta), requires_grad=True)
    out = HeadOutput(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 2, 1, 1), log_delta, stride=10)
    pts = torch.tensor([[[5.0 + 10 * error, 5.0]]])
    total, _ = DualLoss(alpha=0.0, beta=1.0)(out, pts)
    total.backward()
    # gradient descent steps against the gradient: negative gradient -> delta grows
    assert (log_delta.grad.item() < 0) == (direction == "grow")


def test_log1mexp_is_accurate_at_both_ends():
    lp = torch.tensor([-1e-6, -0.5, -30.0], dtype=torch.float64)
    expected = torch.tensor(
        [math.log(-math.expm1(-1e-6)), math.log(1 - math.exp(-0.5)), math.log1p(-math.exp(-30))], dtype=torch.float64
    )
    torch.testing.assert_close(log1mexp(lp), expected, rtol=1e-4, atol=0)


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="loss weights"):
        DualLoss(alpha=-1.0)


def test_loc_radius_trains_each_neighbouring_cell_towards_the_point():
    # 3x3 grid at stride 10, point at (12, 18): in the centre cell, t = (-0.3, 0.3).
    pts = torch.tensor([[[12.0, 18.0]]])
    cols, rows = torch.meshgrid(torch.arange(3.0) + 0.5, torch.arange(3.0) + 0.5, indexing="xy")
    exact = torch.stack([1.2 - cols, 1.8 - rows])[None, None]  # every cell's offset to the point
    zero_scores = [[0.0] * 3] * 3
    _, parts = DualLoss(fixed_delta=True, loc_radius=1, loc_weighting="uniform")(head(zero_scores, offsets=exact), pts)
    assert parts["loss_loc"].item() == pytest.approx(0.0, abs=1e-10)
    # One neighbour off by (0.2, 0): its squared error / 2, averaged over the 9 cells.
    wrong = exact.clone()
    wrong[0, 0, 0, 0, 2] += 0.2
    _, parts = DualLoss(fixed_delta=True, loc_radius=1, loc_weighting="uniform")(head(zero_scores, offsets=wrong), pts)
    assert parts["loss_loc"].item() == pytest.approx(0.5 * 0.04 / 9, rel=1e-5)
    # Radius 0 reads only the ground-truth cell, where the offset is exact.
    _, parts = DualLoss(fixed_delta=True, loc_radius=0)(head(zero_scores, offsets=wrong), pts)
    assert parts["loss_loc"].item() == pytest.approx(0.0, abs=1e-10)


def test_loc_radius_averages_only_the_cells_on_the_grid():
    # Point in the corner cell of a 2x2 grid: radius 1 reaches 4 cells of the grid, not 9.
    pts = torch.tensor([[[5.0, 5.0]]])
    offsets = torch.zeros(1, 1, 2, 2, 2)  # right for cell (0, 0) only; the others miss by one cell
    _, parts = DualLoss(fixed_delta=True, loc_radius=1, loc_weighting="uniform")(
        head([[0.0, 0.0], [0.0, 0.0]], offsets=offsets), pts
    )
    assert parts["loss_loc"].item() == pytest.approx((0 + 0.5 + 0.5 + 1.0) / 4, rel=1e-5)


def test_prob_weighting_adds_each_neighbour_by_its_probability():
    # 1x3 grid, point at the centre of the middle cell; the left cell misses by (0.2, 0),
    # the right one by (0, 0.4). Scores make p = (0.2, 0.5, 0.3).
    pts = torch.tensor([[[15.0, 5.0]]])
    offsets = torch.zeros(1, 1, 2, 1, 3)
    offsets[0, 0, 0, 0, 0] = 1.0 + 0.2  # exact: +1 cell to the right
    offsets[0, 0, 0, 0, 2] = -1.0  # exact: -1 cell
    offsets[0, 0, 1, 0, 2] = 0.4
    p = torch.tensor([0.2, 0.5, 0.3])
    scores = [p.log().tolist()]
    _, parts = DualLoss(fixed_delta=True, loc_radius=1)(head(scores, offsets=offsets), pts)
    expected = 0.0 + 0.2 * 0.5 * 0.04 + 0.3 * 0.5 * 0.16  # ground-truth cell at weight 1
    assert parts["loss_loc"].item() == pytest.approx(expected, rel=1e-5)
    # The weights are not trained through: only the offsets get the neighbours' gradient.
    scores_t = torch.tensor(scores)[None, None].requires_grad_(True)
    out = HeadOutput(scores_t, offsets, torch.zeros(1, 1, 1, 1, 3), 10)
    DualLoss(alpha=0.0, beta=1.0, fixed_delta=True, loc_radius=1)(out, pts)[0].backward()
    assert scores_t.grad.abs().max().item() == 0.0


def test_bad_loc_radius_is_rejected():
    with pytest.raises(ValueError, match="loc_radius"):
        DualLoss(loc_radius=-1)
    with pytest.raises(ValueError, match="loc_radius"):
        DualLoss(loc_radius=1.5)
    with pytest.raises(ValueError, match="loc_weighting"):
        DualLoss(loc_radius=1, loc_weighting="gaussian")


def test_neighbour_loss_is_l1_of_the_neighbours_offsets_at_the_ground_truth_cell():
    from smallnet_lit.model.landmarks import IBUG68
    from smallnet_lit.model.shapes import neighbour_table

    k, c, stride = 68, 2, 10
    index = torch.as_tensor(neighbour_table(IBUG68, c))
    points = torch.rand(1, k, 2) * 39
    # wrong everywhere but at each landmark's own cell
    cell, nb = neighbour_maps_at_truth(points, index, stride, 4, fill=torch.randn(1, k, c, 2, 4, 4))
    nb = nb.flatten(4)

    def out(nb_maps):
        return HeadOutput(
            torch.zeros(1, k, 4, 4),
            torch.zeros(1, k, 2, 4, 4),
            torch.zeros(1, k, 1, 4, 4),
            stride,
            neighbour_offsets=nb_maps.reshape(1, k, c, 2, 4, 4),
            neighbour_index=index,
        )

    _, parts = DualLoss()(out(nb), points)
    assert parts["loss_neighbours"].item() == pytest.approx(0.0, abs=1e-5)
    shifted = nb.clone()
    shifted[0, 5, 1, :, cell[0, 5]] += torch.tensor([0.3, -0.2])  # one pair off by 0.5 in L1
    _, parts = DualLoss()(out(shifted), points)
    assert parts["loss_neighbours"].item() == pytest.approx(0.5 / (k * c), rel=1e-4)
    # Pairs with an unlabelled point do not count; the total adds neighbour_weight x the part.
    valid = torch.ones(1, k)
    valid[0, 60] = 0
    assert 60 not in (5, int(index[5, 1]))
    pairs = int((valid[0, :, None] * valid[0, index]).sum())
    assert pairs < k * c
    total0, parts = DualLoss(neighbour_weight=0.0)(out(shifted), points, valid)
    total2, _ = DualLoss(neighbour_weight=2.0)(out(shifted), points, valid)
    assert parts["loss_neighbours"].item() == pytest.approx(0.5 / pairs, rel=1e-4)
    torch.testing.assert_close(total2 - total0, 2 * parts["loss_neighbours"], atol=1e-5, rtol=0)
    valid[0, index[5, 1]] = 0  # the one wrong pair's neighbour unlabelled: nothing left to learn
    _, parts = DualLoss()(out(shifted), points, valid)
    assert parts["loss_neighbours"].item() == pytest.approx(0.0, abs=1e-5)
