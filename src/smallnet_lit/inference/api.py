"""The Python API, as the field's packages offer it (face_alignment, mediapipe, dlib):

    import smallnet_lit as sl
    model = sl.load("smallnet_300w")          # a shipped name, a .ckpt or an .onnx file
    faces = model("photo.jpg")               # or an RGB uint8 array (H, W, 3)
    faces[0].points, faces[0].sigma, faces[0].box

Faces are found with the MTCNN detector (`detector="haar"`: OpenCV's Haar cascade) unless `boxes` (landmark boxes, x_min y_min
x_max y_max in image pixels) are given; each is cropped like the training protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smallnet_lit.data.images import read_image
from smallnet_lit.inference.detect import DEFAULT_DETECTOR, MIN_FACE, make_detector
from smallnet_lit.inference.predictor import FaceLandmarks, LandmarkPredictor, box_problem


class Landmarker:
    """A loaded model with its face detector: call it on an image to get its faces."""

    def __init__(
        self,
        model: str | Path = "smallnet_300w",
        device: str = "cpu",
        min_face: int = MIN_FACE,
        detector: str = DEFAULT_DETECTOR,
        backend: str | None = None,
    ) -> None:
        if isinstance(min_face, bool) or not isinstance(min_face, int | np.integer) or min_face < 1:
            raise ValueError(
                f"min_face is the smallest face to look for, in pixels (an integer >= 1), got {min_face!r}"
            )
        self.predictor = LandmarkPredictor(model, device, backend=backend)
        self.detector = make_detector(detector, min_face)

    @property
    def scheme(self):
        """The landmark scheme (point count, eye corners, parts) the model predicts."""
        return self.predictor.scheme

    def __call__(self, image: str | Path | np.ndarray, boxes: np.ndarray | None = None) -> list[FaceLandmarks]:
        """Faces of an image (path, or RGB uint8 array), largest detection first: each with
        `box`, `points` (K, 2) and `sigma` (K,) in image pixels and `confidence` (K,)."""
        rgb = read_image(image) if isinstance(image, str | Path) else np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if boxes is None:
            boxes = np.asarray(self.detector(rgb), np.float64).reshape(-1, 4)
        else:
            boxes = np.asarray(boxes, np.float64)
            if boxes.ndim == 1 and boxes.size == 4:  # one box
                boxes = boxes[None]
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"boxes must be (N, 4) rows of x_min y_min x_max y_max, got shape {boxes.shape}")
        for box in boxes:
            if problem := box_problem(box, rgb.shape):
                raise ValueError(f"box {box.tolist()}: {problem}")
        return self.predictor.predict(rgb, boxes)


def load(
    model: str | Path = "smallnet_300w",
    device: str = "cpu",
    min_face: int = MIN_FACE,
    detector: str = DEFAULT_DETECTOR,
    backend: str | None = None,
) -> Landmarker:
    """A Landmarker for a shipped model name (`smallnet_300w`, `smallnet_300w_fast`), a
    checkpoint or an exported ONNX file; `detector` is "mtcnn" or "haar"; `backend` "onnx" or
    "torch" (default: ONNX Runtime for shipped models, which starts without torch)."""
    return Landmarker(model, device, min_face, detector, backend)
