"""The hard-face subset: the worst tenth of each measure (yaw asymmetry, blur, size)."""

import numpy as np
import pytest

from smallnet_lit.model.landmarks import IBUG68
from smallnet_lit.training.hard_faces import Difficulty, hard_flags, sharpness, yaw_asymmetry


def test_hard_flags_pick_the_worst_tenth_of_each_measure():
    faces = [Difficulty(yaw_asymmetry=i / 30, iod_pixels=100 + i, sharpness=500 - i) for i in range(30)]
    flags = hard_flags(faces)
    assert [int(f.sum()) for f in (flags["large_yaw"], flags["small"], flags["blurred"])] == [3, 3, 3]
    assert flags["large_yaw"][-3:].all()  # the most turned
    assert flags["small"][:3].all()  # the smallest inter-ocular distances
    assert flags["blurred"][-3:].all()  # the lowest sharpness
    assert flags["hard"].sum() == 6


def test_yaw_asymmetry_grows_as_the_nose_moves_to_one_side():
    points = np.zeros((68, 2))
    points[0], points[16] = (0, 50), (100, 50)  # contour ends
    points[36], points[45] = (20, 30), (80, 30)  # outer eye corners
    points[30] = (50, 60)
    frontal = yaw_asymmetry(points, IBUG68)
    points[30] = (85, 60)
    turned = yaw_asymmetry(points, IBUG68)
    assert frontal == pytest.approx(0) and turned == pytest.approx(0.7)


def test_blur_lowers_sharpness():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    points = np.array([[50.0, 50.0], [150.0, 150.0]])
    assert sharpness(cv2.GaussianBlur(image, (0, 0), 3), points) < 0.1 * sharpness(image, points)
