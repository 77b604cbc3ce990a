"""Jitter and lag of video smoothing on a clip with known truth:

    python -m smallnet_lit.tools.bench_smoothing --model CKPT [--frames 120] [--pts real_face.pts]

One face (a real annotated face with --pts, else a synthetic one), with per-frame sensor
noise and JPEG compression, holds still for the first half of the clip, then moves
(translation and rotation): the truth is its annotation moved by the same transforms. Each frame is predicted from the true
landmark box (detection is left out), then smoothed. Reported per smoother:
- jitter: mean frame-to-frame movement of the prediction while the face is still (pixels);
- still NME and moving NME: mean inter-ocular NME against the truth in each half (lag
  shows up as a higher moving NME)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from smallnet_lit.data.crop import apply_affine
from smallnet_lit.data.images import read_image
from smallnet_lit.data.synthetic import render_face
from smallnet_lit.inference.predictor import LandmarkPredictor
from smallnet_lit.inference.smoothing import SMOOTHERS, make_smoother
from smallnet_lit.model.landmarks import WFLW98_TO_IBUG68


def clip(
    frames: int, size: int = 256, seed: int = 7, pts: Path | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    if pts is None:
        image, points = render_face(rng, size)
    else:  # a real annotated face, moved by known transforms
        from smallnet_lit.data.ibug import read_pts
        from smallnet_lit.data.images import image_beside

        photo = image_beside(pts)
        if photo is None:
            raise FileNotFoundError(f"no image beside {pts}")
        image, points = read_image(photo), read_pts(pts)
        size = max(image.shape[:2])
        image = cv2.copyMakeBorder(image, 0, size - image.shape[0], 0, size - image.shape[1], cv2.BORDER_REFLECT)
    images, truths = [], []
    for t in range(frames):
        s = max(0, t - frames // 2) / (frames // 2)  # still, then a smooth move
        angle = 20 * np.sin(np.pi * s)
        shift = np.array([0.15 * size * np.sin(2 * np.pi * s), 0.06 * size * s])
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        m[:, 2] += shift
        frame = cv2.warpAffine(image, m, (size, size), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        frame += rng.normal(0, 4, frame.shape)  # sensor noise: still frames are not identical
        _, jpeg = cv2.imencode(".jpg", frame.clip(0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
        images.append(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED))
        truths.append(apply_affine(m, points))
    return images, truths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m smallnet_lit.tools.bench_smoothing", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument(
        "--pts", type=Path, help="use this real 300-W face (.pts beside its image) instead of a synthetic one"
    )
    args = p.parse_args(argv)
    predictor = LandmarkPredictor(args.model)
    images, truths = clip(args.frames, pts=args.pts)
    if predictor.scheme.num_points == 68 and args.pts is None:
        truths = [t[WFLW98_TO_IBUG68] for t in truths]
    raw = []
    for image, truth in zip(images, truths, strict=True):
        raw.append(predictor.predict(image, np.concatenate([truth.min(0), truth.max(0)])[None])[0])
    left, right = predictor.scheme.eye_corners
    half = args.frames // 2
    print(f"{args.frames} frames at {args.fps:g} fps, still for {half}, then moving; model {args.model}")
    print(f"{'smoothing':>10}  {'jitter (px/frame)':>17}  {'still NME':>9}  {'moving NME':>10}")
    for name in SMOOTHERS:
        smoother = make_smoother(name)
        preds = [smoother(f.points, 1 / args.fps, f.sigma) if smoother else f.points for f in raw]
        nme = [
            np.linalg.norm(pr - t, axis=1).mean() / np.linalg.norm(t[left] - t[right])
            for pr, t in zip(preds, truths, strict=True)
        ]
        jitter = np.mean(
            [np.linalg.norm(b - a, axis=1).mean() for a, b in zip(preds[5:half], preds[6:half], strict=False)]
        )
        print(f"{name:>10}  {jitter:17.3f}  {np.mean(nme[5:half]):9.4f}  {np.mean(nme[half:]):10.4f}")


if __name__ == "__main__":
    main()
