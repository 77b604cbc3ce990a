"""The Python API, as the field's packages offer it (face_alignment, mediapipe, dlib):

    import smallnet_lit as sl
    model = sl.load("smallnet_300w")          # a shipped name, a .ckpt or an .onnx file
    faces = model("photo.jpg")               # or an RGB uint8 array (H, W, 3)
    faces[0].points, faces[0].sigma, faces[0].box, faces[0].predicted_nme
    for faces in model.track("clip.mp4"):   # or an iterable of RGB frames: tracked, smoothed
        ...

Faces are found with the MTCNN detector (`detector="haar"`: OpenCV's Haar cascade) unless `boxes` (landmark boxes, x_min y_min
x_max y_max in image pixels) are given; each is cropped like the training protocol."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from smallnet_lit.data.images import read_image
from smallnet_lit.errors import BadInputError
from smallnet_lit.inference.detect import DEFAULT_DETECTOR, MIN_FACE, make_detector
from smallnet_lit.inference.predictor import FaceLandmarks, LandmarkPredictor, box_problem
from smallnet_lit.inference.tracking import FaceTracker


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

    def track(
        self,
        video: str | Path | Iterable[np.ndarray],
        fps: float = 30.0,
        redetect_every: int = 10,
        smooth: str = "one_euro",
    ) -> Iterator[list[FaceLandmarks]]:
        """The faces of every frame of a video file (read with OpenCV) or of an iterable of RGB
        uint8 frames, tracked from frame to frame and smoothed (`smooth`: one_euro, sigma, none),
        as smallnet-predict does for videos: one list of faces per frame."""
        tracker = FaceTracker(self.predictor, self.detector, redetect_every, smooth, name=str(video))
        frames = _video_frames(Path(video)) if isinstance(video, str | Path) else video
        if isinstance(video, str | Path):
            fps = _video_fps(Path(video)) or fps
        for index, frame in enumerate(frames):
            rgb = np.asarray(frame)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"frame {index}: expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
            yield tracker(rgb, index, 1.0 / fps)


def _video_fps(path: Path) -> float | None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return fps or None


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    import cv2

    if not path.is_file():
        raise BadInputError(f"{path}: video not found")
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        raise BadInputError(f"{path}: not a readable video (no frame could be decoded)")
    try:
        while ok:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = cap.read()
    finally:
        cap.release()


def load(
    model: str | Path = "smallnet_300w",
    device: str = "cpu",
    min_face: int = MIN_FACE,
    detector: str = DEFAULT_DETECTOR,
    backend: str | None = None,
) -> Landmarker:
    """A Landmarker for a shipped model's name (`model.checkpoints.shipped_names()`,
    weights/README.md), a checkpoint or an exported ONNX file; `detector` is "mtcnn" or "haar";
    `backend` "onnx" or "torch" (default: ONNX Runtime for shipped models, which starts without torch)."""
    return Landmarker(model, device, min_face, detector, backend)
