import numpy as np
import pytest

from smallnet_lit.data.synthetic import render_face
from smallnet_lit.model.landmarks import IBUG68, SCHEMES, WFLW98, WFLW98_TO_IBUG68, get_scheme
from smallnet_lit.model.shapes import template_3d


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=lambda s: s.name)
def test_flip_pairs_form_an_involution(scheme):
    perm = scheme.flip_permutation
    assert sorted(perm) == list(range(scheme.num_points))
    assert (perm[perm] == np.arange(scheme.num_points)).all()
    indices = [i for pair in scheme.flip_pairs for i in pair]
    assert len(indices) == len(set(indices)), "a point is in two flip pairs"


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=lambda s: s.name)
def test_flipping_twice_gives_the_face_back(scheme):
    points = np.random.default_rng(0).uniform(0, 200, (scheme.num_points, 2))
    np.testing.assert_allclose(scheme.flip_points(scheme.flip_points(points, 200), 200), points)


def test_mirrored_left_eye_corner_lands_on_the_right_one():
    _, points = render_face(np.random.default_rng(3), 200)
    flipped = WFLW98.flip_points(points, 200)
    left, right = WFLW98.eye_corners
    assert points[left, 0] < points[right, 0]
    # After a flip the semantic order is restored: slot 60 is again the image-left corner,
    # and it sits where the old right corner was mirrored to.
    assert flipped[left, 0] < flipped[right, 0]
    np.testing.assert_allclose(flipped[left], [199 - points[right, 0], points[right, 1]], atol=1e-9)


def test_template_is_mirror_symmetric_under_the_flip_pairs():
    tmpl = template_3d()
    mirrored = tmpl[WFLW98.flip_permutation] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, tmpl, atol=1e-9)
    # Parts sit where a face has them: brows above eyes above nose tip above mouth.
    assert tmpl[33:51, 1].max() < tmpl[60:76, 1].min() < tmpl[54, 1] < tmpl[76:96, 1].min()


def test_68_point_subset_respects_both_flip_schemes():
    assert len(WFLW98_TO_IBUG68) == 68
    assert (WFLW98.flip_permutation[WFLW98_TO_IBUG68] == WFLW98_TO_IBUG68[IBUG68.flip_permutation]).all()
    assert tuple(WFLW98_TO_IBUG68[list(IBUG68.eye_corners)]) == WFLW98.eye_corners


def test_get_scheme_by_name_or_count_and_errors():
    assert get_scheme(68) is IBUG68 and get_scheme("wflw98") is WFLW98
    with pytest.raises(ValueError, match="unknown landmark scheme 5"):
        get_scheme(5)


def test_neighbour_tables_are_the_nearest_points_of_the_same_face_region():
    from smallnet_lit.model.landmarks import IBUG68, WFLW98
    from smallnet_lit.model.shapes import neighbour_table

    table = neighbour_table(IBUG68, 4)
    assert table.shape == (68, 4) and (table != np.arange(68)[:, None]).all()
    assert set(table[36]) <= set(range(36, 42)) | set(range(17, 22))  # outer eye corner: eye and brow
    assert set(table[8][:2]) == {7, 9}  # chin tip: the jaw points beside it
    assert set(table[30]) <= set(range(27, 36))  # nose tip: the nose
    # The reference shape is symmetric, so a point's neighbours mirror its partner's (but for
    # ties at the C-th place, broken by index: the midline points' mirrored pairs).
    perm = IBUG68.flip_permutation
    mirrored = sum(set(perm[table[i]]) == set(table[perm[i]]) for i in range(68))
    assert mirrored >= 62
    assert neighbour_table(WFLW98, 10).shape == (98, 10)
    with pytest.raises(ValueError, match="between 1 and 67"):
        neighbour_table(IBUG68, 0)


def test_test_time_flip_maps_the_mirrored_prediction_back():
    """eval's flip_test: a model that predicts the mirror of the points on the mirrored crop
    (an equivariant one) averages back to exactly its points and sigmas."""
    import torch

    from smallnet_lit.training.evaluate import average_with_flip

    points, sigma = torch.rand(2, 68, 2) * 63, torch.rand(2, 68)

    class Equivariant:
        scheme = IBUG68

        def __call__(self, images):
            return IBUG68.flip_points(points, images.shape[-1]), sigma[:, torch.as_tensor(IBUG68.flip_permutation)]

    averaged, averaged_sigma = average_with_flip(Equivariant(), torch.zeros(2, 3, 64, 64), points, sigma)
    torch.testing.assert_close(averaged, points)
    torch.testing.assert_close(averaged_sigma, sigma)
