"""The WFLW rehearsal folder (tools.synthetic_wflw): the official layout at any size, attribute
flags from how each face was drawn, and the baseline recipe run end to end on it."""

import numpy as np
import pytest

from smallnet_lit.data.wflw import ANNOTATION_DIR, IMAGE_DIR, SUBSET_DIR, SUBSET_FILES, WFLWFaces
from smallnet_lit.model.landmarks import WFLW_ATTRIBUTES
from smallnet_lit.tools.synthetic_wflw import main as synthetic_wflw
from smallnet_lit.train import train


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("wflw") / "WFLW"
    assert synthetic_wflw([str(out), "--train", "40", "--test", "24", "--seed", "3"]) == 0
    return out


def _lines(root, split):
    return (root / ANNOTATION_DIR / f"list_98pt_rect_attr_{split}.txt").read_text().splitlines()


def test_the_folder_has_wflws_layout_photos_with_several_faces_and_read_flags(rehearsal):
    train_lines, test_lines = _lines(rehearsal, "train"), _lines(rehearsal, "test")
    assert len(train_lines) == 40 and len(test_lines) == 24
    assert all(len(line.split()) == 207 for line in train_lines + test_lines)
    images = [line.split()[-1] for line in train_lines]
    assert len(set(images)) < len(images)  # photos hold several faces
    from PIL import Image

    assert min(Image.open(rehearsal / IMAGE_DIR / name).size[0] for name in images) >= 640
    flags = np.array([[int(v) for v in line.split()[200:206]] for line in test_lines])
    assert 0 < flags.sum() < flags.size  # some faces in some subsets, not all in all
    for j, suffix in enumerate(SUBSET_FILES):  # official subset lists: the flagged test lines
        listed = (rehearsal / SUBSET_DIR / f"list_98pt_test_{suffix}.txt").read_text().splitlines()
        assert listed == [line for line, f in zip(test_lines, flags[:, j], strict=True) if f]
    faces = WFLWFaces(rehearsal, split="test")
    np.testing.assert_array_equal(np.array([r.attributes for r in faces.records]), flags)


def test_the_folder_is_seeded_and_never_overwritten(rehearsal, tmp_path):
    again = tmp_path / "again"
    assert synthetic_wflw([str(again), "--train", "40", "--test", "24", "--seed", "3"]) == 0
    assert _lines(again, "test") == _lines(rehearsal, "test")
    with pytest.raises(SystemExit):
        synthetic_wflw([str(again), "--train", "4", "--test", "4"])


def test_the_baseline_recipe_runs_on_it_with_the_attribute_report(make_cfg, rehearsal):
    cfg = make_cfg(
        [
            "+experiment=baseline",
            f"data.root={rehearsal}",
            "trainer.max_epochs=1",
            "data.train_samples_per_epoch=16",
        ]
    )
    metrics = train(cfg)
    assert "val/nme" in metrics
    assert all(f"test/nme_{name}" in metrics for name in WFLW_ATTRIBUTES), sorted(metrics)
