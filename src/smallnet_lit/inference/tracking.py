"""Faces through a video: detect every few frames and, in between, crop each face where its
landmarks were in the frame before; smooth each face's points over time; re-detect at once
when a face's predicted error jumps (the track has likely slipped off the face). Used by
`smallnet-predict` on videos and by `sl.load(...).track(...)`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from smallnet_lit.inference.detect import box_iou
from smallnet_lit.inference.predictor import FaceLandmarks, LandmarkPredictor, box_problem, landmark_box
from smallnet_lit.inference.smoothing import make_smoother

log = logging.getLogger(__name__)

TRACK_IOU = 0.3  # a detection overlapping a track this much continues it
JUMP_FACTOR, JUMP_FLOOR = 2.0, 0.05  # a predicted NME that doubles to above 5%: re-detect


def error_jumped(track: dict, face: FaceLandmarks) -> bool:
    before, now = track.get("predicted_nme"), face.predicted_nme
    return before is not None and now is not None and now > max(JUMP_FLOOR, JUMP_FACTOR * before)


class FaceTracker:
    """Landmarks of every face, frame after frame. `detector(rgb) -> (N, 4) boxes`;
    `given_boxes(index) -> boxes or None` (instead of the detector: boxes that start or reset
    the tracks on the frames that have them); `smooth`: a smoothing name (smoothing.SMOOTHERS)."""

    def __init__(
        self,
        predictor: LandmarkPredictor,
        detector: Callable[[np.ndarray], np.ndarray],
        redetect_every: int = 10,
        smooth: str = "one_euro",
        given_boxes: Callable[[int], np.ndarray | None] | None = None,
        name: str = "video",
    ) -> None:
        if redetect_every < 1:
            raise ValueError(f"redetect_every must be at least 1, got {redetect_every}")
        make_smoother(smooth)  # an unknown name fails here, before any frame
        self.predictor, self.detector, self.redetect_every = predictor, detector, redetect_every
        self.smooth, self.given_boxes, self.name = smooth, given_boxes, name
        self.tracks: list[dict] = []

    def __call__(self, rgb: np.ndarray, index: int, dt: float) -> list[FaceLandmarks]:
        """The faces of frame `index` (RGB uint8), `dt` seconds after the previous one."""
        tracks = self.tracks
        if self.given_boxes is not None:
            boxes = self.given_boxes(index)
            if boxes is not None:
                for box in boxes:
                    if problem := box_problem(box, rgb.shape):
                        log.warning(
                            "%s frame %d: box %s rejected: %s", self.name, index, np.round(box, 2).tolist(), problem
                        )
                boxes = np.array([b for b in boxes if box_problem(b, rgb.shape) is None]).reshape(-1, 4)
        elif index % self.redetect_every == 0 or not tracks:
            boxes = self.detector(rgb)
            boxes = boxes if len(boxes) else None  # a detector miss keeps the faces tracked so far
        else:
            boxes = None
        if boxes is not None:
            tracks[:] = [self._continue(b) for b in boxes]
        faces = self.predictor.predict(rgb, np.array([t["box"] for t in tracks]).reshape(-1, 4))
        if boxes is None and self.given_boxes is None and any(map(error_jumped, tracks, faces)):
            detected = self.detector(rgb)
            if len(detected):
                tracks[:] = [self._continue(b, fresh=True) for b in detected]
                faces = self.predictor.predict(rgb, np.array([t["box"] for t in tracks]).reshape(-1, 4))
        for t, f in zip(tracks, faces, strict=True):
            t["predicted_nme"] = f.predicted_nme
            if t["smoother"] is not None:
                f.points = t["smoother"](f.points, dt, f.sigma)
            t["box"] = landmark_box(f.points)
        return faces

    def _continue(self, box: np.ndarray, fresh: bool = False) -> dict:
        """A detection that overlaps a track continues it: its landmark box and smoothing state
        are kept (they fit the face better than a fresh detector box), unless `fresh` (the track
        lost its face): then the detector's box with the same smoothing state."""
        best = max(self.tracks, key=lambda t: box_iou(box, t["box"]), default=None)
        if best is not None and box_iou(box, best["box"]) > TRACK_IOU:
            return {**best, "box": box} if fresh else best
        return {"box": box, "smoother": make_smoother(self.smooth)}
