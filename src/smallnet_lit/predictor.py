"""Landmarks for faces in photos: crop each face box like the evaluation protocol, run
SmallNet (PyTorch checkpoint or exported ONNX model), map points back to photo pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from smallnet_lit.data.faces import CropConfig, FaceSample, apply_affine, crop_transform, invert_affine, to_tensor
from smallnet_lit.landmarks import LandmarkScheme, get_scheme

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "smallnet_300w.ckpt"


def resolve_model(model: str | Path) -> Path:
    """A path, or the name of a shipped model (`smallnet_300w`, `smallnet_300w_fast`)."""
    path = Path(model)
    if path.is_file():
        return path
    shipped = WEIGHTS_DIR / f"{model}.ckpt"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in WEIGHTS_DIR.glob("*.ckpt")))
    raise FileNotFoundError(f"model not found: {model} (not a file, nor a shipped model: {names})")


@dataclass
class FaceLandmarks:
    box: np.ndarray  # the landmark box used for the crop, photo pixels
    points: np.ndarray  # (K, 2) photo pixels
    sigma: np.ndarray  # (K,) predicted standard deviation, photo pixels
    confidence: np.ndarray  # (K,) peak cell probability

    def to_json(self) -> dict:
        return {
            "box": np.round(self.box, 2).tolist(),
            "points": np.round(self.points, 2).tolist(),
            "sigma": np.round(self.sigma, 3).tolist(),
            "confidence": np.round(self.confidence, 4).tolist(),
        }


class LandmarkPredictor:
    """`model` is a checkpoint (.ckpt) or an exported ONNX file (.onnx, run with ONNX
    Runtime). The ONNX file carries the scheme name and input size in its metadata."""

    def __init__(self, model: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu", crop_scale: float = 1.2) -> None:
        model = resolve_model(model)
        self.crop = CropConfig(scale=crop_scale, use_given_box=True)
        if model.suffix == ".onnx":
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self.scheme: LandmarkScheme = get_scheme(meta["scheme"])
            self.input_size = int(meta["input_size"])
            self._net = None
        else:
            from smallnet_lit.eval import load_model

            module = load_model(str(model), device)
            self._net, self._session = module.net.eval(), None
            self.scheme, self.input_size, self.device = module.scheme, module.net.input_size, device

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalized (B, 3, S, S) float32 -> points (B, K, 2), sigma (B, K), confidence (B, K) in input pixels."""
        if self._session is not None:
            return tuple(self._session.run(None, {"image": batch}))
        with torch.no_grad():
            out = self._net.forward_maps(torch.from_numpy(batch).to(self.device))
            points, sigma, peak = self._net.decode(out)
        return points.cpu().numpy(), sigma.cpu().numpy(), peak.cpu().numpy()

    def predict(self, image_rgb: np.ndarray, landmark_boxes: np.ndarray) -> list[FaceLandmarks]:
        """Landmarks of each face; boxes are (N, 4) landmark boxes in photo pixels."""
        if len(landmark_boxes) == 0:
            return []
        crops, inverses = [], []
        for box in landmark_boxes:
            sample = FaceSample(image_rgb, np.zeros((0, 2)), "", box=np.asarray(box, np.float64))
            m, _ = crop_transform(sample, self.input_size, self.crop)
            crops.append(to_tensor(cv2.warpAffine(image_rgb, m, (self.input_size,) * 2, flags=cv2.INTER_LINEAR)))
            inverses.append(invert_affine(m))
        points, sigma, conf = self.run(torch.stack(crops).numpy())
        faces = []
        for i, box in enumerate(landmark_boxes):
            inv = inverses[i]
            scale = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
            faces.append(FaceLandmarks(np.asarray(box, float), apply_affine(inv, points[i]), sigma[i] * scale, conf[i]))
        return faces


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight box around landmarks (for tracking a face into the next video frame)."""
    return np.concatenate([points.min(0), points.max(0)])
