"""Landmarks for faces in photos: crop each face box like the evaluation protocol, run
SmallNet (PyTorch checkpoint or exported ONNX model), map points back to photo pixels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smallnet_lit.data.crop import CropConfig, apply_affine, crop_transform, invert_affine, warp
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.sample import FaceSample, normalize
from smallnet_lit.model.checkpoints import DEFAULT_CHECKPOINT, WEIGHTS_DIR, model_protocol, resolve_model  # noqa: F401 - re-exported
from smallnet_lit.model.landmarks import LandmarkScheme, get_scheme
from smallnet_lit.model.uncertainty import face_uncertainty, predicted_nme


@dataclass
class FaceLandmarks:
    box: np.ndarray  # the landmark box used for the crop, photo pixels
    points: np.ndarray  # (K, 2) photo pixels
    sigma: np.ndarray  # (K,) predicted standard deviation, photo pixels
    confidence: np.ndarray  # (K,) peak cell probability
    # The model's estimate of this face's NME (from its sigma, calibrated on a validation
    # split: model.uncertainty); None for a model without an error calibration.
    predicted_nme: float | None = None

    def to_json(self) -> dict:
        # float64 before rounding: float32 values print as 111.96800231933594
        return {
            "box": np.round(np.asarray(self.box, np.float64), 2).tolist(),
            "points": np.round(np.asarray(self.points, np.float64), 2).tolist(),
            "sigma": np.round(np.asarray(self.sigma, np.float64), 3).tolist(),
            "confidence": np.round(np.asarray(self.confidence, np.float64), 4).tolist(),
            **({} if self.predicted_nme is None else {"predicted_nme": round(float(self.predicted_nme), 4)}),
        }


BACKENDS = ("onnx", "torch")


def runtime_file(model: str | Path, backend: str | None) -> Path:
    """The file to run `model` with: a shipped name's ONNX export (weights/NAME.onnx) unless
    backend="torch"; a given file as it is, if the backend fits it."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    shipped_onnx = WEIGHTS_DIR / f"{model}.onnx"
    if not Path(model).is_file() and backend != "torch" and shipped_onnx.is_file():
        return shipped_onnx
    path = resolve_model(model)
    if backend == "onnx" and path.suffix != ".onnx":
        raise ValueError(f"{model}: backend onnx needs an ONNX file (smallnet-export {model} --onnx model.onnx)")
    if backend == "torch" and path.suffix == ".onnx":
        raise ValueError(f"{model}: backend torch needs a checkpoint (.ckpt), not an ONNX file")
    return path


class LandmarkPredictor:
    """`model` is a checkpoint (.ckpt) or an exported ONNX file (.onnx, run with ONNX
    Runtime). The ONNX file carries the scheme name and input size in its metadata."""

    def __init__(
        self,
        model: str | Path = "smallnet_300w",
        device: str = "cpu",
        crop_scale: float | None = None,
        backend: str | None = None,
    ) -> None:
        """backend: "onnx" (ONNX Runtime: an .onnx file, or a shipped model's int8 export),
        "torch" (a checkpoint), or None: a shipped model's fastest path (ONNX Runtime int8,
        which keeps its accuracy: docs/speed.md), else what the file is. The crop and the pixel
        normalization are the model's own (its protocol); `crop_scale` overrides the crop."""
        model = runtime_file(model, backend)
        if model.suffix == ".onnx":
            import onnxruntime as ort

            try:
                self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
                meta = self._session.get_modelmeta().custom_metadata_map
                self.scheme: LandmarkScheme = get_scheme(meta["scheme"])
                self.input_size = int(meta["input_size"])
                self.error_calibration = json.loads(meta["error_calibration"]) if "error_calibration" in meta else None
                protocol = model_protocol(meta)
            except Exception as e:  # onnxruntime raises its own types for a corrupt file
                raise BadInputError(
                    f"{model}: not a usable SmallNet ONNX model ({type(e).__name__}: {str(e)[:200]}); "
                    "export one with smallnet-export CKPT --onnx PATH"
                ) from None
            self._net = None
        else:
            from smallnet_lit.model.checkpoints import load_net

            loaded = load_net(str(model), device)
            # re-parameterized branches folded: the deployed plain net, at its speed
            self._net, self._session = loaded.net.deployed().eval(), None
            self.scheme, self.input_size, self.device = loaded.scheme, loaded.net.input_size, device
            self.error_calibration = loaded.hparams.get("error_calibration")
            protocol = loaded.protocol
        self.protocol = {**protocol, **({} if crop_scale is None else {"crop_scale": float(crop_scale)})}
        self.crop = CropConfig(scale=self.protocol["crop_scale"], use_given_box=True)
        # photo pixels added to every point: the training files' convention (checkpoints.PROTOCOL_DEFAULTS)
        self.offset = np.array([self.protocol["offset_x"], self.protocol["offset_y"]])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalized (B, 3, S, S) float32 -> points (B, K, 2), sigma (B, K), confidence (B, K) in input pixels."""
        if self._session is not None:
            return tuple(self._session.run(None, {"image": batch}))
        import torch

        with torch.no_grad():
            out = self._net.forward_maps(torch.from_numpy(batch).to(self.device))
            points, sigma, peak = self._net.decode(out)
        return points.cpu().numpy(), sigma.cpu().numpy(), peak.cpu().numpy()

    def predict(self, image_rgb: np.ndarray, landmark_boxes: np.ndarray) -> list[FaceLandmarks]:
        """Landmarks of each face; boxes are (N, 4) landmark boxes in photo pixels. A box
        of no area or off the image is a ValueError (see `box_problem`)."""
        if len(landmark_boxes) == 0:
            return []
        for box in landmark_boxes:
            if problem := box_problem(box, image_rgb.shape):
                raise ValueError(f"box {np.round(np.asarray(box, float), 2).tolist()}: {problem}")
        crops, inverses = [], []
        for box in landmark_boxes:
            sample = FaceSample(image_rgb, np.zeros((0, 2)), "", box=np.asarray(box, np.float64))
            m, _ = crop_transform(sample, self.input_size, self.crop)
            crop = warp(image_rgb, m, self.input_size)
            crops.append(normalize(crop, self.protocol["pixel_mean"], self.protocol["pixel_std"]))
            inverses.append(invert_affine(m))
        points, sigma, conf = self.run(np.stack(crops))
        faces = []
        for i, box in enumerate(landmark_boxes):
            inv = inverses[i]
            scale = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
            photo_points = apply_affine(inv, points[i]) + self.offset
            faces.append(FaceLandmarks(np.asarray(box, float), photo_points, sigma[i] * scale, conf[i]))
        if self.error_calibration and faces:
            u = face_uncertainty(
                np.stack([f.points for f in faces]), np.stack([f.sigma for f in faces]), self.scheme.eye_corners
            )
            for face, estimate in zip(faces, predicted_nme(u, self.error_calibration), strict=True):
                face.predicted_nme = float(estimate)
        return faces


def box_problem(box, image_shape: tuple[int, ...]) -> str | None:
    """Why a face box cannot give landmarks (None when it can): not finite, no area, or
    mostly off the image (a crop of black padding)."""
    box = np.asarray(box, np.float64)
    if box.shape != (4,) or not np.isfinite(box).all():
        return "not four finite numbers (x_min, y_min, x_max, y_max)"
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        return "less than 2 pixels wide or high (x_max <= x_min or y_max <= y_min?)"
    h, w = image_shape[:2]
    overlap = max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0))
    if overlap < 0.25 * (x1 - x0) * (y1 - y0):
        return f"mostly outside the {w}x{h} image"
    return None


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight box around landmarks (for tracking a face into the next video frame)."""
    return np.concatenate([points.min(0), points.max(0)])
