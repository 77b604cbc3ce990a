"""Where decoding loses accuracy: a checkpoint's NME with each decoding beside the NME it
would have if it knew the ground-truth cell of every landmark (its own offset there), and
how often the most probable cell is that cell.
    python -m smallnet_lit.tools.decoding ckpt_path=CKPT data=ibug300w split=val
The gap between soft-argmax and the known-cell figure is what better cell choice or
better neighbouring offsets can win (docs/results.md). For a model with neighbour regression
(model.net.neighbours), each decoding is also reported from the points' own maps alone
(`<mode>_own_only`): what averaging in the neighbours' readings is worth."""

from __future__ import annotations

import dataclasses

import hydra
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from smallnet_lit.model.codec import HeadOutput, cell_centre, decode, encode
from smallnet_lit.model.metrics import point_errors
from smallnet_lit.training.config import config_dir
from smallnet_lit.training.evaluate import model_and_data

MODES = ("soft", "argmax")


def known_cell_points(out: HeadOutput, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each landmark read from its ground-truth cell (centre + that cell's offset), in input
    pixels, and whether the most probable cell is that cell (B, K)."""
    b, k, h, w = out.scores.shape
    cell, _, _ = encode(points, out.stride, (h, w))
    offsets = out.offsets.flatten(3).gather(3, cell[:, :, None, None].expand(b, k, 2, 1)).squeeze(3)
    known = (cell_centre(cell, w) + offsets) * out.stride
    return known, out.scores.flatten(2).argmax(-1) == cell


@torch.no_grad()
def diagnose(model, loader: DataLoader, eye_corners: tuple[int, int]) -> dict[str, float]:
    errors: dict[str, list[torch.Tensor]] = {name: [] for name in (*MODES, "known_cell")}
    hits = []
    for batch in tqdm(loader, desc="decoding", unit="batch"):
        truth = batch["points"]
        out = model.net.forward_maps(batch["image"])
        for mode in MODES:
            errors[mode].append(point_errors(decode(out, mode)[0], truth, eye_corners))
            if out.neighbour_offsets is not None:
                own = dataclasses.replace(out, neighbour_offsets=None, neighbour_index=None)
                errors.setdefault(f"{mode}_own_only", []).append(point_errors(decode(own, mode)[0], truth, eye_corners))
        known, hit = known_cell_points(out, truth)
        errors["known_cell"].append(point_errors(known, truth, eye_corners))
        hits.append(hit)
    err = {name: torch.cat(e) for name, e in errors.items()}
    hit = torch.cat(hits)
    result = {f"nme/{name}": float(e.mean()) for name, e in err.items()}
    result["cell_hit_rate"] = float(hit.float().mean())
    for name, mask in (("hit", hit), ("miss", ~hit)):
        result[f"soft_point_error/{name}"] = float(err["soft"][mask].mean()) if mask.any() else float("nan")
    result["soft_error_share/miss"] = float(err["soft"][~hit].sum() / err["soft"].sum())
    return result


def run(cfg: DictConfig) -> tuple[dict[str, float], int]:
    """The diagnosis of cfg.ckpt_path on cfg.split (eval's config and crop protocol), and
    the number of faces."""
    model, datamodule = model_and_data(cfg)
    dataset = datamodule.dataset(cfg.split)
    loader = DataLoader(dataset, batch_size=datamodule.batch_size, num_workers=datamodule.num_workers)
    return diagnose(model, loader, model.scheme.eye_corners), len(dataset)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    result, faces = run(cfg)
    print(f"{cfg.ckpt_path} on {cfg.split} ({faces} faces), inter-ocular NME:")
    for key, value in result.items():
        print(f"  {key:28s} {value:.4f}")


if __name__ == "__main__":
    main()
