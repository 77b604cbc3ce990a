"""smallnet-predict's work: images, folders and videos through the face detector and the
landmark model, written as JSON lines, overlay images and overlay videos."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smallnet_lit.data.errors import BadInputError
from smallnet_lit.data.images import IMAGE_SUFFIXES, read_image
from smallnet_lit.inference.detect import BoxLookup, make_detector, read_boxes
from smallnet_lit.inference.plots import contact_sheet, draw_landmarks, draw_predicted_error, error_colour
from smallnet_lit.inference.predictor import (
    FaceLandmarks,
    LandmarkPredictor,
    box_problem,
)
from smallnet_lit.inference.tracking import FaceTracker

log = logging.getLogger("smallnet_lit.predict")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
MEDIA_SUFFIXES = {*IMAGE_SUFFIXES, *VIDEO_SUFFIXES}
SHEET_IMAGES = 48  # overlays per contact sheet (6 x 8 tiles)
MAX_PIXELS = 80_000_000  # refuse decompression bombs before they eat the memory


class PredictionWriter:
    """Runs detector + model over images and videos and writes predictions.jsonl, overlays
    and overlay videos into `args.out` (the options of smallnet-predict)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.predictor = LandmarkPredictor(args.model, backend=getattr(args, "backend", None))
        if getattr(args, "max_predicted_nme", None) is not None and not self.predictor.error_calibration:
            raise ValueError(
                f"--max-predicted-nme needs a model with an error calibration; {args.model} has none "
                "(smallnet-export CKPT --slim OUT --error-calibration RUN/error_calibration.json)"
            )
        self.detector = make_detector(args.detector, args.min_face)
        self.boxes_given = read_boxes(args.boxes) if args.boxes else None
        self.boxes: BoxLookup | None = None
        self.failures: list[str] = []
        self.video_outputs: set[Path] = set()
        self.sheet_tiles: list[tuple[np.ndarray, str]] = []
        self.sheets = 0
        args.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(args.out / "predictions.jsonl", "w")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self.jsonl.close()
        self.write_sheet()

    def write_sheet(self) -> None:
        """The overlays collected so far as contact_sheet_<n>.jpg (--contact-sheet)."""
        if not self.sheet_tiles:
            return
        self.sheets += 1
        out = self.args.out / f"contact_sheet_{self.sheets}.jpg"
        cv2.imwrite(str(out), contact_sheet(self.sheet_tiles)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        log.info("wrote %s (%d images)", out, len(self.sheet_tiles))
        self.sheet_tiles = []

    def run(self, inputs: list[Path]) -> list[str]:
        """Every image (progress bar), then every video, of the inputs; returns the
        messages of the inputs that could not be read. Closes the JSON lines file."""
        files = expand(inputs, skip=self.args.out)
        if self.boxes_given is not None:
            self.boxes = BoxLookup(self.boxes_given, files)
        images = [(f, name) for f, name in files if f.suffix.lower() not in VIDEO_SUFFIXES]
        try:
            for f, name in tqdm(images, desc="images", unit="image", disable=len(images) < 2):
                self.image(f, name)
            for f, name in files:
                if f.suffix.lower() in VIDEO_SUFFIXES:
                    self.video(f, name)
        finally:
            self.close()
        if self.boxes is not None and (unused := self.boxes.unused()):
            self.failures.append(
                f"{self.args.boxes}: {len(unused)} entr{'y' if len(unused) == 1 else 'ies'} matched no input: "
                + ", ".join(unused)
            )
        return self.failures

    def fail(self, message: str, record: dict | None = None) -> None:
        """An input or output that did not come through: logged, kept for the exit code."""
        self.failures.append(message)
        if record is not None:
            self.write({**record, "error": message})
        log.warning("%s", message)

    def faces_in(self, image: np.ndarray, name: str, path: Path) -> tuple[list[FaceLandmarks], list[dict]]:
        """Faces, and the given boxes that cannot give landmarks (with why)."""
        if self.boxes is not None:
            boxes = self.boxes.get(path, name)
            boxes = np.zeros((0, 4)) if boxes is None else boxes
        else:
            boxes = self.detector(image)
        good, rejected = [], []
        for box in boxes:
            if problem := box_problem(box, image.shape):
                rejected.append({"box": np.round(np.asarray(box, np.float64), 2).tolist(), "problem": problem})
                log.warning("%s: box %s rejected: %s", path, rejected[-1]["box"], problem)
            else:
                good.append(box)
        return self.predictor.predict(image, np.asarray(good, np.float64).reshape(-1, 4)), rejected

    def draw(self, image: np.ndarray, faces: list[FaceLandmarks]) -> np.ndarray:
        """Each face's points (in its predicted-error colour) and its predicted NME."""
        overlay = image
        for f in faces:
            sigma = f.sigma if self.args.sigma else None
            colour = error_colour(f.predicted_nme)
            overlay = draw_landmarks(overlay, f.points, colour, scheme=self.predictor.scheme, sigma=sigma)
            if f.predicted_nme is not None:
                overlay = draw_predicted_error(overlay, f.points, f.predicted_nme)
        return overlay

    def split_uncertain(self, faces: list[FaceLandmarks], where: str) -> tuple[list[FaceLandmarks], list[dict]]:
        """--max-predicted-nme: the faces above it are left out, listed and logged."""
        limit = self.args.max_predicted_nme
        if limit is None:
            return faces, []
        kept = [f for f in faces if f.predicted_nme <= limit]
        left = [
            {"box": np.round(np.asarray(f.box, np.float64), 2).tolist(), "predicted_nme": round(f.predicted_nme, 4)}
            for f in faces
            if f.predicted_nme > limit
        ]
        if left:
            log.info("%s: left out %d face(s) with a predicted NME above %g", where, len(left), limit)
        return kept, left

    def write(self, record: dict) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()

    def image(self, path: Path, name: str) -> None:
        try:
            check_size(path)
            image = read_image(path)
        except (BadInputError, OSError) as e:
            self.fail(f"skipped: {e}", {"image": str(path)})
            return
        faces, rejected = self.faces_in(image, name, path)
        faces, uncertain = self.split_uncertain(faces, str(path))
        if not faces and not uncertain:
            log.info("%s: no face found", path)
        record = {"image": str(path), "width": image.shape[1], "height": image.shape[0]}
        record["faces"] = [f.to_json() for f in faces]
        if rejected:
            record["rejected_boxes"] = rejected
        if uncertain:
            record["uncertain_faces"] = uncertain
        self.write(record)
        if not self.args.no_overlays:
            overlay = self.draw(image, faces)
            out = self.args.out / "overlays" / overlay_name(name)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                written = cv2.imwrite(str(out), overlay[..., ::-1])
            except (OSError, cv2.error) as e:
                written, why = False, str(e)
            else:
                why = "name too long, folder not writable or disk full"
            if not written:
                self.fail(f"{path}: overlay not written to {out} ({why})")
            if self.args.contact_sheet:
                self.sheet_tiles.append((overlay, f"{name} ({len(faces)})"))
                if len(self.sheet_tiles) == SHEET_IMAGES:
                    self.write_sheet()

    def video(self, path: Path, name: str) -> None:
        cap = cv2.VideoCapture(str(path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            self.fail(f"skipped: {path}: not a readable video (no frame could be decoded)", {"video": str(path)})
            return
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        writer = None
        if not self.args.no_overlays:
            out = self.video_output(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
            if not writer.isOpened():
                self.fail(f"{path}: overlay video not written to {out} (cannot open it for writing)")
                writer = None
        tracker = FaceTracker(
            self.predictor,
            self.detector,
            self.args.redetect_every,
            self.args.smooth,
            None if self.boxes is None else (lambda i: self.boxes.get(path, name, frame=i)),
            str(path),
        )
        index = 0
        with tqdm(total=total, desc=path.name, unit="frame") as bar:
            while ok:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                faces = tracker(rgb, index, 1.0 / fps)
                faces, uncertain = self.split_uncertain(faces, f"{path} frame {index}")
                record = {"video": str(path), "frame": index, "faces": [f.to_json() for f in faces]}
                self.write({**record, "uncertain_faces": uncertain} if uncertain else record)
                if writer is not None:
                    writer.write(self.draw(rgb, faces)[..., ::-1])
                ok, frame = cap.read()
                index += 1
                bar.update()
        cap.release()
        if writer is not None:
            writer.release()
        if total and index < total:
            self.fail(
                f"{path}: video truncated or damaged: {index} of its {total} frames could be decoded "
                f"(predictions written for those {index})",
                {"video": str(path), "frames": index},
            )

    def video_output(self, name: str) -> Path:
        """<name>_landmarks.mp4; a second video of the same stem (clip.avi beside clip.mp4)
        keeps its suffix in the name (clip_avi_landmarks.mp4) instead of overwriting."""
        stem = Path(name).with_suffix("")
        out = self.args.out / f"{stem}_landmarks.mp4"
        if out in self.video_outputs:
            out = self.args.out / f"{stem}_{Path(name).suffix.lstrip('.').lower()}_landmarks.mp4"
        self.video_outputs.add(out)
        return out


def check_size(path: Path) -> None:
    if not path.is_file():
        raise BadInputError(f"{path}: not found")
    header = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if header is not None and header.shape[0] * header.shape[1] * 64 > MAX_PIXELS:
        raise BadInputError(
            f"{path}: image too large (about {header.shape[0] * header.shape[1] * 64:,} pixels; limit {MAX_PIXELS:,})"
        )


def expand(inputs: list[Path], skip: Path | None = None) -> list[tuple[Path, str]]:
    """Files to read, each with its name in the outputs: the path relative to the folder
    given (so sub/a.jpg and sub2/a.jpg stay apart), or its file name for a file given.
    Folders are walked through their symbolic links (each real folder once, so a link loop
    ends), leaving out `skip` (the output folder: its overlays are not inputs)."""
    files = []
    skip_real = os.path.realpath(skip) if skip is not None else None
    for p in inputs:
        if p.is_dir():
            found = []
            seen: set[str] = set()
            for folder, subfolders, names in os.walk(p, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen or real == skip_real:
                    subfolders[:] = []
                    continue
                seen.add(real)
                subfolders.sort()
                found += [Path(folder) / n for n in names if Path(n).suffix.lower() in MEDIA_SUFFIXES]
            if not found:
                log.warning("%s: no images or videos in this folder", p)
            files += sorted((f, f.relative_to(p).as_posix()) for f in found)
        else:
            files.append((p, p.name))
    return files


def overlay_name(name: str) -> str:
    """overlays/<name>, kept a JPEG: a.jpg -> a.jpg, a.png -> a.png.jpg (a.jpg and a.png differ)."""
    return name if Path(name).suffix.lower() in (".jpg", ".jpeg") else f"{name}.jpg"
