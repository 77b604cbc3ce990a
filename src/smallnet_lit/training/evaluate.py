"""Evaluation of a checkpoint on a data split (what `python -m smallnet_lit.eval` runs):
metrics.json (NME, FR, AUC, per-source, per-attribute and hard-face NME, uncertainty
calibration), predictions.jsonl (one face a line: points and per-point sigma in photo
pixels, its NME and difficulty) and ced.png, written into the run dir."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader
from tqdm import tqdm

from smallnet_lit.data.crop import apply_affine
from smallnet_lit.data.faces import FaceDataset
from smallnet_lit.data.sample import PIXEL_MEAN, PIXEL_STD
from smallnet_lit.inference.detect import DETECTORS, DetectedFaces, make_detector
from smallnet_lit.inference.plots import plot_ced
from smallnet_lit.model import codec
from smallnet_lit.model.checkpoints import model_protocol
from smallnet_lit.model.metrics import FaceAlignmentMetrics, point_errors, uncertainty_calibration
from smallnet_lit.model.module import LandmarkModule, load_model
from smallnet_lit.model.uncertainty import face_uncertainty, fit_error_calibration, predicted_nme, uncertainty_report
from smallnet_lit.training.hard_faces import CRITERIA, face_difficulty, hard_flags, yaw_bin_flags
from smallnet_lit.training.instantiate import datamodule_from
from smallnet_lit.training.reporting import loggers_from

log = logging.getLogger(__name__)


def to_photo(points: torch.Tensor, sigma: torch.Tensor, affine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map input-pixel points (B, K, 2) and sigma (B, K) back to photo pixels with the
    (B, 2, 3) crop inverses (similarity transforms, so sigma scales by their scale)."""
    photo = apply_affine(affine, points)
    scale = affine[:, :, :2].det().abs().sqrt()
    return photo, sigma * scale[:, None]


def average_with_flip(
    model: LandmarkModule,
    images: torch.Tensor,
    points: torch.Tensor,
    sigma: torch.Tensor,
    mirror_shift: torch.Tensor | None = None,
):
    """Mean of the predictions on the crop and on its mirror image (mapped back with the
    scheme's flip permutation). `mirror_shift` (B,): the sources' flip offsets in these
    images' pixels; a model that learned them reads the mirror image that far left."""
    f_points, f_sigma = model(images.flip(-1))
    f_points = model.scheme.flip_points(f_points, images.shape[-1])
    if mirror_shift is not None:
        f_points[..., 0] += 2 * mirror_shift.to(f_points)[:, None]
    f_sigma = f_sigma[:, torch.as_tensor(model.scheme.flip_permutation, device=images.device)]
    return (points + f_points) / 2, (sigma + f_sigma) / 2


@torch.no_grad()
def predict_split(
    model: LandmarkModule,
    loader: DataLoader,
    metrics: FaceAlignmentMetrics,
    device: str,
    flip_test: bool = False,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[list[dict], dict[str, float]]:
    """Predict every face of the loader into `metrics`; return one JSON row per face and
    the uncertainty calibration over all points. `offset`: photo pixels added to every point
    (the model's protocol offset_x / offset_y)."""
    rows, errors, sigmas = [], [], []
    for batch in tqdm(loader, desc="evaluating", unit="batch"):
        # crops smaller than the model's input (eval's read_size) are read upsampled
        images, factor, shift = codec.upsample(batch["image"].to(device), model.net.input_size)
        points, sigma = model(images)
        if flip_test:
            # A model that carries the files' convention at its output (a protocol offset) was
            # trained without it and reads both crops alike: its mean needs no mirror shift.
            learned = "mirror_shift" in batch and offset == (0.0, 0.0)
            shift_px = batch["mirror_shift"].to(device) * factor if learned else None
            points, sigma = average_with_flip(model, images, points, sigma, shift_px)
        points, sigma = (points - shift) / factor, sigma / factor  # in the crop's pixels
        pred, pred_sigma = to_photo(points.cpu(), sigma.cpu(), batch["to_photo"])
        pred = pred + torch.tensor(offset, dtype=pred.dtype)
        truth, _ = to_photo(batch["points"], torch.zeros(batch["points"].shape[:2]), batch["to_photo"])
        metrics.update(pred, truth, batch["attributes"], batch["source"])
        nme = metrics.nme[-1]
        errors.append((pred - truth).norm(dim=-1).numpy())
        offsets = (pred - truth).mean(dim=1).numpy().astype(np.float64)  # photo pixels, per face
        parts = part_nme(point_errors(pred.float(), truth.float(), model.scheme.eye_corners), model.scheme.parts)
        sigmas.append(pred_sigma.numpy())
        for i, key in enumerate(batch["key"]):
            rows.append(
                {
                    "image": key.split("#")[0],
                    "face": key,
                    # float64 before rounding: float32 values print as 74.99400329589844
                    "points": np.round(pred[i].numpy().astype(np.float64), 2).tolist(),
                    "sigma": np.round(pred_sigma[i].numpy().astype(np.float64), 3).tolist(),
                    "nme": round(float(nme[i]), 6),
                    # mean signed error (prediction - truth) of its points, photo pixels
                    "offset_px": np.round(offsets[i], 3).tolist(),
                    # the NME of each face part's points alone (where a model loses: tools.paired --part)
                    "part_nme": {name: round(float(v[i]), 6) for name, v in parts.items()},
                    "uncertainty": float(
                        face_uncertainty(pred[i].numpy(), pred_sigma[i].numpy(), model.scheme.eye_corners)
                    ),
                }
            )
    calibration = uncertainty_calibration(np.concatenate(errors), np.concatenate(sigmas)) if errors else {}
    return rows, calibration


def part_nme(errors: torch.Tensor, parts: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """(B, K) normalized point errors -> each part's NME (B,): the mean over its points."""
    return {name: errors[:, list(index)].mean(-1) for name, index in parts.items()}


def part_report(rows: list[dict], split: str) -> dict[str, float]:
    """Mean NME of each face part's points over all faces (`<split>/part/<name>/nme`)."""
    names = rows[0].get("part_nme", {}) if rows else {}
    return {f"{split}/part/{name}/nme": float(np.mean([row["part_nme"][name] for row in rows])) for name in names}


def data_for_split(data: DictConfig, split: str) -> DictConfig:
    """The data config to evaluate `split`; 'all' reads every face of the folder: the
    validation source's reader with split=all (300-W-format folders)."""
    if split != "all":
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        return data
    val = data.get("val")
    if val is None or "split" not in val:
        raise ValueError("split=all needs a folder-reading data config (data=ibug300w or data=faces68)")
    data = data.copy()
    with open_dict(data):
        data["all"] = data.val.copy()
        data["all"]["split"] = "all"
    return data


def model_and_data(cfg: DictConfig):
    """The checkpoint of an eval config and the datamodule of its split (cfg.split is set:
    the test split where the data has one, else all), at the checkpoint's input size (or
    at cfg.read_size: smaller crops that predict_split reads upsampled)."""
    model = load_model(cfg.ckpt_path, cfg.device)
    protocol = model_protocol(dict(model.hparams))
    if (protocol["pixel_mean"], protocol["pixel_std"]) != (PIXEL_MEAN, PIXEL_STD):
        raise ValueError(f"{cfg.ckpt_path}: its pixel normalization {protocol} is not this package's")
    with open_dict(cfg):
        cfg.split = cfg.get("split") or ("test" if cfg.data.get("test") is not None else "all")
        if "eval_crop" in cfg.data:  # the model's own crop, whatever the data config says
            cfg.data.eval_crop.scale = protocol["crop_scale"]
    read_size = cfg.get("read_size") or model.net.input_size
    if not isinstance(read_size, int) or not 16 <= read_size <= model.net.input_size:
        raise ValueError(
            f"read_size={read_size!r}: must be a whole number of pixels from 16 to the model's input "
            f"size ({model.net.input_size}); the crops are read upsampled to it"
        )
    datamodule = datamodule_from(data_for_split(cfg.data, cfg.split), read_size, only_split=cfg.split)
    if datamodule.scheme.name != model.scheme.name:
        raise ValueError(
            f"checkpoint {cfg.ckpt_path} predicts {model.scheme.name} landmarks but the data config gives "
            f"{datamodule.scheme.name}: choose a matching data= config"
        )
    return model, datamodule


def face_yaws(source, num_points: int, mean_face_path: str | None) -> np.ndarray | None:
    """|yaw| in degrees of every face from its annotated points (nan where the 3D fit
    fails); None for schemes other than 68 points or without the mean face file."""
    from smallnet_lit.data.profiling import head_yaw, load_mean_face

    if num_points != 68 or not mean_face_path or not Path(mean_face_path).is_file():
        log.info(
            "no yaw bins: %s", "68-point faces only" if num_points != 68 else f"no mean 3D face at {mean_face_path}"
        )
        return None
    mean_face = load_mean_face(mean_face_path)
    return np.array([head_yaw(source.load(i).points, mean_face) for i in range(len(source))])


def yaw_report(
    yaws: np.ndarray, per_face: np.ndarray, groups: np.ndarray, sources: list[str], split: str, fr_threshold: float
) -> dict[str, float]:
    """NME, FR and face count per yaw bin, over all faces and per source."""
    result = {}
    parts = {"": np.ones(len(yaws), bool)} | {f"{name}/": groups == g for g, name in enumerate(sources)}
    for prefix, in_part in parts.items():
        for name, flag in yaw_bin_flags(yaws).items():
            faces = per_face[flag & in_part]
            result[f"{split}/{prefix}{name}/faces"] = int(len(faces))
            result[f"{split}/{prefix}{name}/nme"] = float(faces.mean()) if len(faces) else float("nan")
            result[f"{split}/{prefix}{name}/fr"] = float((faces > fr_threshold).mean()) if len(faces) else float("nan")
    return result


def bias_report(rows: list[dict], groups: np.ndarray, sources: list[str], split: str) -> dict[str, float]:
    """Mean signed error in photo pixels (prediction - truth), x and y, over all faces and per
    source. A convention offset of the annotation files shows here: a model trained with flips
    cannot learn an x offset and reads about that many pixels left of them (bias_x_px < 0);
    set the source's flip_offset to minus it (docs/data.md, "Flip offset")."""
    offsets = np.array([row["offset_px"] for row in rows]).reshape(-1, 2)
    parts = {"": np.ones(len(rows), bool)} | {f"{name}/": groups == g for g, name in enumerate(sources)}
    report = {}
    for prefix, mask in parts.items():
        if mask.any():
            report[f"{split}/{prefix}bias_x_px"] = float(offsets[mask, 0].mean())
            report[f"{split}/{prefix}bias_y_px"] = float(offsets[mask, 1].mean())
    return report


def write_label_offset(result: dict, offset: tuple[float, float], cfg: DictConfig, faces: int) -> None:
    """label_offset.json: the protocol offset that cancels this split's mean signed error (the
    model's own offset minus its bias), for `smallnet-export CKPT --slim OUT --label-offset FILE`
    (docs/data.md, "Flip offset"). Fit on faces the model never trained on: on its own training
    faces a net that memorized them shows less of the files' offset than it has."""
    fitted = {
        "offset_x": round(offset[0] - result[f"{cfg.split}/bias_x_px"], 3),
        "offset_y": round(offset[1] - result[f"{cfg.split}/bias_y_px"], 3),
        "fitted_on": f"{cfg.ckpt_path} on the {cfg.split} split ({faces} faces)",
    }
    (Path(cfg.paths.output_dir) / "label_offset.json").write_text(json.dumps(fitted, indent=1))


def error_report(uncertainty, per_face, groups, hard, datamodule, cfg) -> dict[str, float]:
    """How well each face's predicted error (its sigma) tells failures, over all faces, per
    source and on the hard subset (`model.uncertainty.uncertainty_report`)."""
    parts = {"": np.ones(len(per_face), bool), "hard/": hard}
    parts |= {f"{name}/": groups == g for g, name in enumerate(datamodule.source_names(cfg.split))}
    result = {}
    for prefix, keep in parts.items():
        if keep.sum() > 1:
            for k, v in uncertainty_report(uncertainty[keep], per_face[keep], cfg.fr_threshold).items():
                result[f"{cfg.split}/{prefix}predicted_error/{k}"] = v
    if f"{cfg.split}/predicted_error/auroc_failure" not in result:
        return result
    log.info(
        "predicted error: AUROC %.3f for NME > 8%% (%d faces), Spearman %.3f with the NME; NME %.4f / %.4f after "
        "dropping the 10%% / 20%% least certain faces",
        *(
            result[f"{cfg.split}/predicted_error/{k}"]
            for k in ("auroc_failure", "failures", "spearman", "nme_keep_90", "nme_keep_80")
        ),
    )
    return result


def evaluate(cfg: DictConfig) -> dict[str, float]:
    model, datamodule = model_and_data(cfg)
    if cfg.get("decode"):
        model.net.decode_mode = cfg.decode
    sources = datamodule.source_names(cfg.split)
    dataset, missed = crops_to_evaluate(datamodule.dataset(cfg.split), cfg.get("crop_from", "truth"), sources)
    loader = DataLoader(dataset, batch_size=datamodule.batch_size, num_workers=datamodule.num_workers)
    metrics = FaceAlignmentMetrics(model.scheme.eye_corners, cfg.fr_threshold, datamodule.attribute_names)
    log.info("evaluating %s on %d %s faces", cfg.ckpt_path, len(dataset), cfg.split)
    protocol = model_protocol(dict(model.hparams))
    offset = (protocol["offset_x"], protocol["offset_y"])
    rows, calibration = predict_split(model, loader, metrics, cfg.device, bool(cfg.get("flip_test")), offset)

    result = {f"{cfg.split}/{k}": float(v) for k, v in metrics.compute(sources).items()}
    result.update({f"{cfg.split}/{k}": float(v) for k, v in missed.items()})
    per_face, groups = metrics.per_face().numpy(), torch.cat(metrics.groups).numpy()
    result.update(bias_report(rows, groups, sources, cfg.split))
    result.update(part_report(rows, cfg.split))
    write_label_offset(result, offset, cfg, len(rows))
    hard = hard_face_report(dataset.source, rows, per_face, cfg.split, result)
    predicted_error_report(model, rows, per_face, groups, hard, datamodule, cfg, result)
    yaws = face_yaws(dataset.source, model.scheme.num_points, cfg.get("mean_face"))
    if yaws is not None:
        result.update(yaw_report(yaws, per_face, groups, sources, cfg.split, cfg.fr_threshold))
        for row, yaw in zip(rows, yaws, strict=True):
            row["yaw"] = None if np.isnan(yaw) else round(float(yaw), 1)
    out = Path(cfg.paths.output_dir)
    document = {"ckpt_path": str(cfg.ckpt_path), "faces": len(rows), **result, "uncertainty": calibration}
    (out / "metrics.json").write_text(json.dumps(document, indent=2))
    with open(out / "predictions.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    curves = ced_curves(per_face, groups, hard, yaws, sources, metrics, datamodule.attribute_names)
    title = f"CED, {cfg.split} split ({Path(str(cfg.ckpt_path)).stem})"
    plot_ced(curves, out / "ced.png", cfg.fr_threshold, title=title)
    for logger in loggers_from(cfg.get("logger")):
        logger.log_metrics(result)
        logger.save()
    log.info("%s", ", ".join(f"{k}={v:.4f}" for k, v in result.items()))
    log.info(
        "uncertainty: %.1f%% of points within 1 sigma (Gaussian: %.1f%%), %.1f%% within 2 sigma (%.1f%%), "
        "Spearman(sigma, error) = %.3f",
        100 * calibration["within_1_sigma"],
        100 * calibration["expected_within_1_sigma"],
        100 * calibration["within_2_sigma"],
        100 * calibration["expected_within_2_sigma"],
        calibration["spearman_sigma_error"],
    )
    log.info("wrote metrics.json, predictions.jsonl and ced.png to %s", out)
    return result


def crops_to_evaluate(dataset: FaceDataset, crop_from: str, sources: list[str]) -> tuple[FaceDataset, dict]:
    """The annotation crops (`truth`, every figure's protocol), or the crops of a detector's
    boxes as smallnet-predict makes them, with the share of faces it missed (overall and per source)."""
    if crop_from == "truth":
        return dataset, {}
    if crop_from not in DETECTORS:
        raise ValueError(f"crop_from must be 'truth' or a detector ({', '.join(DETECTORS)}), got {crop_from!r}")
    total = len(dataset.source)
    detected = DetectedFaces(dataset.source, make_detector(crop_from))
    missed = {"not_found": (total - len(detected)) / total}
    for g, name in enumerate(sources):
        in_part = sum(detected.source.source_of(i) == g for i in range(total))
        missed[f"{name}/not_found"] = detected.missed.get(g, 0) / max(in_part, 1)
    log.info("%s found %d of %d faces (%.1f%% not found)", crop_from, len(detected), total, 100 * missed["not_found"])
    return FaceDataset(detected, dataset.input_size, replace(dataset.crop, use_given_box=True)), missed


def hard_face_report(source, rows: list[dict], per_face: np.ndarray, split: str, result: dict) -> np.ndarray:
    """NME and count of the hard subset and of each criterion into `result`, each face's
    difficulty into its row; returns the hard flags."""
    difficulty = [face_difficulty(source, i) for i in tqdm(range(len(rows)), desc="hard faces", unit="face")]
    flags = hard_flags(difficulty)
    for name, flag in flags.items():
        result[f"{split}/{name}/nme"] = float(per_face[flag].mean()) if flag.any() else float("nan")
        result[f"{split}/{name}/faces"] = int(flag.sum())
    for i, (row, d) in enumerate(zip(rows, difficulty, strict=True)):
        row["difficulty"] = {k: round(v, 3) for k, v in vars(d).items()}
        row["hard"] = [c for c in CRITERIA if flags[c][i]]
    return flags["hard"]


def predicted_error_report(model, rows, per_face, groups, hard, datamodule, cfg, result: dict) -> None:
    """How well the faces' predicted error tells failures (into `result`), the calibration that
    fits this split (error_calibration.json) and, with the model's own calibration, each row's
    predicted_nme."""
    uncertainty = np.array([r.pop("uncertainty") for r in rows])
    result.update(error_report(uncertainty, per_face, groups, hard, datamodule, cfg))
    sources = ", ".join(datamodule.source_names(cfg.split)) or "the data"
    fitted_on = f"{cfg.ckpt_path} on the {cfg.split} split of {sources} ({len(rows)} faces)"
    try:
        calibration = fit_error_calibration(uncertainty, per_face, fitted_on)
        (Path(cfg.paths.output_dir) / "error_calibration.json").write_text(json.dumps(calibration, indent=1))
    except ValueError as e:  # too few faces to fit
        log.info("no error_calibration.json: %s", e)
    estimates = predicted_nme(uncertainty, model.hparams.get("error_calibration"))
    for i, row in enumerate(rows):
        row["predicted_nme"] = None if estimates is None else round(float(estimates[i]), 5)


def ced_curves(per_face, groups, hard, yaws, sources, metrics, attribute_names) -> dict[str, np.ndarray]:
    """Per-face NME of every set the CED picture shows: all, hard, turned, each source, each attribute."""
    curves = {"all": per_face, "hard (pose, size, blur)": per_face[hard]}
    if yaws is not None and (yaws >= 30).any():
        curves["yaw >= 30 deg"] = per_face[yaws >= 30]
    for g, name in enumerate(sources):
        if (groups == g).any():
            curves[name] = per_face[groups == g]
    if attribute_names:
        flags = torch.cat(metrics.attributes).numpy()
        curves.update({n: per_face[flags[:, j] > 0] for j, n in enumerate(attribute_names) if flags[:, j].any()})
    return curves
