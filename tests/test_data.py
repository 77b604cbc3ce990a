import cv2
import numpy as np
import pytest
import torch

from smallnet_lit.data.augment import Photometric
from smallnet_lit.data.crop import CropConfig, crop_transform
from smallnet_lit.data.faces import FaceDataset, FaceSample, FaceSource
from smallnet_lit.data.ibug import IbugFaces
from smallnet_lit.data.synthetic import SyntheticFaces
from smallnet_lit.model.landmarks import IBUG68, WFLW98
from smallnet_lit.training.evaluate import to_photo


class DotFaces(FaceSource):
    """Photos whose only content is a distinct bright dot under each landmark, so a point
    that moves differently from the pixels lands on black."""

    def __init__(self, n=6, size=200):
        self.n, self.size = n, size

    @property
    def scheme(self):
        return IBUG68

    def __len__(self):
        return self.n

    def load(self, index):
        rng = np.random.default_rng(index)
        image = np.zeros((self.size, self.size, 3), np.uint8)
        points = rng.uniform(50, 150, (68, 2))
        points[IBUG68.eye_corners[0]] = [60, 90]
        points[IBUG68.eye_corners[1]] = [140, 90]
        for j, (x, y) in enumerate(points):
            # colour encodes the point's index, so a wrong flip permutation is caught too
            cv2.circle(image, (round(x), round(y)), 2, (255, 4 * j, 255 - 3 * j), -1)
        return FaceSample(image, points, f"dots/{index}")


def test_synthetic_faces_are_deterministic_and_seeds_differ():
    a, b = SyntheticFaces(4, seed=1), SyntheticFaces(4, seed=2)
    np.testing.assert_array_equal(a.load(2).image, SyntheticFaces(4, seed=1).load(2).image)
    np.testing.assert_array_equal(a.load(2).points, SyntheticFaces(4, seed=1).load(2).points)
    assert not np.array_equal(a.load(2).points, b.load(2).points)
    assert SyntheticFaces(2, scheme="ibug68").load(0).points.shape == (68, 2)


@pytest.mark.parametrize("augment", [False, True])
def test_augmented_points_stay_on_their_image_features(augment):
    source = DotFaces()
    crop = CropConfig(scale=1.4, shift=0.05, scale_jitter=0.15, rotation=30, flip=0.5)
    ds = FaceDataset(source, 96, crop, augment=augment, seed=3)
    flipped_once = False
    for epoch in range(3):
        ds.epoch = epoch
        for i in range(len(ds)):
            item = ds[i]
            image = (item["image"].permute(1, 2, 0).numpy() * 64 + 127.5).round()
            pts = item["points"].numpy()
            xy = np.round(pts).astype(int)
            ok = item["valid"].numpy() & (xy >= 1).all(1) & (xy < 95).all(1)
            red = image[xy[ok, 1], xy[ok, 0], 0]
            assert (red > 120).mean() > 0.95, "points drifted off their dots"
            # the right dot: its colour encodes the point index
            green = image[xy[ok, 1], xy[ok, 0], 1]
            idx = np.arange(68)[ok]
            assert np.median(np.abs(green - 4 * idx * (red / 255))) < 40
            left, right = IBUG68.eye_corners
            assert pts[left, 0] < pts[right, 0], "semantic left/right lost after a flip"
            # mapping back to the photo gives the annotation (in mirrored order if flipped)
            back, _ = to_photo(item["points"][None], torch.zeros(1, 68), item["to_photo"][None])
            flipped = np.linalg.det(item["to_photo"][:, :2].numpy()) < 0
            flipped_once |= flipped
            expected = source.load(i).points[IBUG68.flip_permutation if flipped else slice(None)]
            np.testing.assert_allclose(back[0].numpy(), expected, atol=1e-3)
    assert flipped_once == augment


def test_flip_actually_happens_in_training_crops():
    ds = FaceDataset(DotFaces(), 96, CropConfig(flip=1.0), augment=True)
    plain = FaceDataset(DotFaces(), 96, CropConfig())
    a, b = ds[0]["image"], plain[0]["image"]
    # bilinear warps round in fixed point: a few grey levels of difference are allowed
    torch.testing.assert_close(a, b.flip(-1), atol=0.1, rtol=0)


def test_photometric_augmentation_is_seeded_and_keeps_shape():
    aug = Photometric(colour=1, blur=1, grey=1, noise=1, occlusion=1)
    image = SyntheticFaces(1).load(0).image
    out1 = aug(image, np.random.default_rng(5))
    out2 = aug(image, np.random.default_rng(5))
    assert out1.shape == image.shape and out1.dtype == np.uint8
    np.testing.assert_array_equal(out1, out2)
    assert not np.array_equal(out1, image)
    with pytest.raises(ValueError, match="probability"):
        Photometric(blur=1.5)


def test_eval_crop_is_square_around_1_2_times_the_landmark_extent():
    sample = FaceSample(np.zeros((300, 300, 3), np.uint8), np.array([[100.0, 100.0], [200.0, 150.0]]), "x")
    ds_points = FaceDataset(_One(sample), 120, CropConfig(scale=1.2))[0]["points"].numpy()
    # extent 100 px wide -> crop side 120 px -> 1 px per input pixel, centred
    np.testing.assert_allclose(ds_points, [[59.5 - 50, 59.5 - 25], [59.5 + 50, 59.5 + 25]], atol=1e-4)


class _One(FaceSource):
    def __init__(self, sample):
        self.sample = sample

    @property
    def scheme(self):
        return WFLW98

    def __len__(self):
        return 1

    def load(self, index):
        return self.sample


@pytest.mark.parametrize("kwargs", [dict(scale=0), dict(flip=2.0), dict(rotation=-1)])
def test_bad_crop_config_is_rejected(kwargs):
    with pytest.raises(ValueError, match="crop"):
        CropConfig(**kwargs)


@pytest.mark.parametrize("total, weighted", [(100, True), (77, False), (None, False)])
def test_epoch_draws_are_torchs_on_one_process_and_split_over_ranks(total, weighted):
    """One process: the draws of WeightedRandomSampler / RandomSampler (recorded runs stay
    reproducible). DDP: the ranks share out one epoch of the recipe's size, none repeated
    (Lightning's own wrapper made a RandomSampler one pass over the faces)."""
    from torch.utils.data import RandomSampler, WeightedRandomSampler

    from smallnet_lit.data.datamodule import EpochDraws

    weights = torch.rand(50, generator=torch.Generator().manual_seed(1)).double() if weighted else None
    g = torch.Generator().manual_seed(7 + 3)  # seed + epoch
    if weighted:
        reference = list(WeightedRandomSampler(weights, total, True, generator=g))
    else:
        reference = list(RandomSampler(range(50), total is not None, total, generator=g))
    assert list(EpochDraws(50, total, weights, seed=7, epoch=3)) == reference
    ranks = [EpochDraws(50, total, weights, seed=7, epoch=3, rank=r, world_size=3) for r in range(3)]
    assert sum(len(r) for r in ranks) == len(reference) == (total or 50)
    assert sorted(i for r in ranks for i in r) == sorted(reference)


def test_squeeze_narrows_the_face_and_moves_the_points_exactly():
    points = np.array([[40.0, 50.0], [120.0, 50.0], [80.0, 130.0]])
    sample = FaceSample(np.zeros((160, 160, 3), np.uint8), points, "")
    plain, _ = crop_transform(sample, 64, CropConfig(), None)
    widths = []
    for seed in range(20):
        m, _ = crop_transform(sample, 64, CropConfig(squeeze=0.5), np.random.default_rng(seed))
        p = points @ m[:, :2].T + m[:, 2]
        widths.append(np.ptp(p[:, 0]) / np.ptp(p[:, 1]))
    base = points @ plain[:, :2].T + plain[:, 2]
    assert min(widths) < 0.8 * np.ptp(base[:, 0]) / np.ptp(base[:, 1]) < max(widths) + 1e-9


def test_in_the_wild_augmentation_is_seeded_and_keeps_the_old_stream_when_off(ibug_root):
    source = IbugFaces(ibug_root)
    on = Photometric(lighting=1, strong_blur=1, lowres=1, jpeg=1)
    ds = FaceDataset(source, 64, CropConfig(rotation=10), True, on, seed=3)
    a, b = ds[0]["image"], ds[0]["image"]
    torch.testing.assert_close(a, b)
    plain = FaceDataset(source, 64, CropConfig(rotation=10), True, Photometric(), seed=3)[0]["image"]
    assert (a - plain).abs().mean() > 0.05
    # enabling nothing new leaves the augmentation exactly as before the options existed
    zero = FaceDataset(source, 64, CropConfig(rotation=10), True, Photometric(lowres=0, jpeg=0), seed=3)[0]["image"]
    torch.testing.assert_close(zero, plain)
    with pytest.raises(ValueError, match="lowres must be a probability"):
        Photometric(lowres=2)
