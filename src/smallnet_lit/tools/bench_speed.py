"""CPU latency of SmallNet models side by side with a peer model (PFLD-GhostOne's ONNX):
ONNX Runtime, batch 1, one thread, float and int8, timed in one process and interleaved
(each round runs every model once, in a shuffled order), so both see the same machine
state. Prints each model's median and its ratio to the peer, and the CPU's vector extensions.

    python -m smallnet_lit.tools.bench_speed [MODEL ...] [--arch [label=NAME] widths=24,48,96,192 depths=1,2,2,2 block=dw ...]
        [--peer ../shared/peers/PFLD_GhostOne_112.onnx] [--rounds 300] [--int8-accuracy FACES_DIR]
        [--training] [--size 128]

MODEL: a shipped name or a checkpoint, or LABEL=CHECKPOINT (its weights: int8 calibrated on --int8-accuracy's
training faces when given). --arch: an architecture with random weights (speed does not
depend on the weights; int8 calibrated on random crops), keys of SmallNet (`widths`,
`depths`, `block`, `width_mult`, `head_stride`, `input_size`, `neighbours`, `reparam`) on
top of the shipped default's network; `label=NAME` names its row (else its KEY=VALUE list).
Network only: cropping and detection are not included."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smallnet_lit.inference.deploy import export_onnx, export_onnx_int8
from smallnet_lit.model.net import SmallNet, count_macs, count_params

DEFAULT_PEER = Path("../shared/peers/PFLD_GhostOne_112.onnx")
VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_description() -> str:
    """The CPU's model name and the vector extensions that change ONNX Runtime's kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    present = [f for f in VECTOR_EXTENSIONS if f in flags]
    kind = "AVX-512" if "avx512f" in flags else "AVX2-only" if "avx2" in flags else "no AVX2"
    return f"{name}, {os.cpu_count()} cores, {kind} ({' '.join(present) or 'none of ' + ' '.join(VECTOR_EXTENSIONS)})"


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_latency(runs: dict[str, callable], rounds: int, seed: int = 0) -> dict[str, float]:
    """Median seconds of each callable, run once per round in a shuffled order (after a
    warm-up), so slow phases of the machine touch every model alike."""
    order = list(runs)
    rng = random.Random(seed)
    for _ in range(max(5, rounds // 10)):
        for name in order:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            t = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def peer_runner(path: Path):
    if not path.is_file():
        raise SystemExit(
            f"peer model not found: {path} (PFLD-GhostOne's ONNX; give --peer PATH, or --peer none to time ours alone)"
        )
    s = session(path)
    name = s.get_inputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    return lambda: s.run(None, {name: x})


def training_images_per_second(net: SmallNet, steps: int = 6, batch: int = 32) -> float:
    """Forward + dual loss + backward + SGD step at batch 32, NHWC (as the faces68 recipes
    train), all threads: the network's share of the training time."""
    from smallnet_lit.model.loss import DualLoss

    net = SmallNet(**net.config).train().to(memory_format=torch.channels_last)
    loss_fn = DualLoss()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    size = net.input_size
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    points = torch.rand(batch, net.num_points, 2) * size

    def step() -> None:
        opt.zero_grad()
        loss, _ = loss_fn(net.forward_maps(x), points)
        loss.backward()
        opt.step()

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return batch / interleaved_latency({"step": step}, steps)["step"]
    finally:
        torch.set_num_threads(threads)


def int8_accuracy(
    net: SmallNet, folder: Path, paths: dict[str, Path], offset: tuple[float, float] = (0.0, 0.0)
) -> dict[str, float]:
    """NME of each ONNX file on the seeded validation split of an iBUG-format folder, eval crops;
    `offset`: the model's protocol offset in photo pixels, added as eval and prediction add it."""
    from smallnet_lit.data.crop import CropConfig, apply_affine
    from smallnet_lit.data.faces import FaceDataset
    from smallnet_lit.data.ibug import IbugFaces
    from smallnet_lit.model.landmarks import get_scheme
    from smallnet_lit.model.metrics import nme_per_face

    scheme = get_scheme(net.num_points)
    val = FaceDataset(IbugFaces(folder, split="val"), net.input_size, CropConfig())
    items = [val[i] for i in range(len(val))]
    x = np.stack([it["image"].numpy() for it in items])
    affine = torch.stack([it["to_photo"] for it in items])

    def photo(points) -> torch.Tensor:
        return apply_affine(affine, torch.as_tensor(points))

    truth = photo(torch.stack([it["points"] for it in items]))
    shift = torch.tensor(offset, dtype=truth.dtype)
    result = {"faces": len(items)}
    for name, path in paths.items():
        points = session(path).run(None, {"image": x})[0]
        result[name] = nme_per_face(photo(points) + shift, truth, scheme.eye_corners).mean().item()
    return result


def architecture_base() -> dict:
    """What an --arch does not set: the shipped default's network, never the first MODEL's (a
    fast model's width_mult 0.75 once scaled every --arch's widths, and its row was not the net named)."""
    from smallnet_lit.model.module import load_model

    return dict(load_model("smallnet_300w").net.config)


def parse_arch(items: list[str], base: dict) -> tuple[str, dict]:
    """An --arch's label (its `label=` item, else the items themselves) and SmallNet's arguments."""
    arch, label = dict(base), " ".join(i for i in items if not i.startswith("label="))
    for item in items:
        key, sep, value = item.partition("=")
        if key == "label" and sep:
            label = value
            continue
        if not sep or key not in base:
            raise SystemExit(f"--arch {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(base))}")
        if key in ("widths", "depths"):
            # 16,32,64,128 or Hydra's [16,32,64,128]
            arch[key] = [int(v) for v in value.strip("[]").split(",")]
        elif key in ("block", "pool", "decode"):
            arch[key] = value
        elif key in ("reparam", "norm"):
            arch[key] = value.lower() in ("1", "true", "yes")
        elif key == "head_stride":
            arch[key] = None if value in ("", "null", "none") else int(value)
        else:
            arch[key] = type(base[key])(value) if base[key] is not None else float(value)
    return label, arch


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.bench_speed", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "models",
        nargs="*",
        help="shipped names or checkpoints, LABEL=CHECKPOINT to name one (default: every shipped model)",
    )
    p.add_argument("--arch", nargs="+", action="append", default=[], help="an architecture: KEY=VALUE ... (repeatable)")
    p.add_argument("--peer", default=str(DEFAULT_PEER), help="the peer's ONNX, or 'none'")
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--int8-accuracy", type=Path, help="also NME of float and int8 on this iBUG folder's val split")
    p.add_argument("--training", action="store_true", help="also training throughput (batch 32, all threads)")
    p.add_argument(
        "--plot", type=Path, help="with --int8-accuracy: the accuracy-cost front (NME against the ratio to the peer)"
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be positive, got {args.rounds}")

    from smallnet_lit.model.checkpoints import model_protocol, shipped_names
    from smallnet_lit.model.module import load_model

    nets: dict[str, SmallNet] = {}
    offsets: dict[str, tuple[float, float]] = {}  # a model's protocol offset, which scoring adds
    names = args.models or ([] if args.arch else shipped_names())
    for item in names:
        label, _, path = item.rpartition("=")  # LABEL=CHECKPOINT names a run in the table and plot
        model = load_model(path)
        nets[label or item] = model.net.eval()
        protocol = model_protocol(dict(model.hparams))
        offsets[label or item] = (protocol["offset_x"], protocol["offset_y"])
    names = list(nets)
    base = architecture_base() if args.arch else {}
    for i, items in enumerate(args.arch):
        label, arch = parse_arch(items, base)
        if label in nets:
            p.error(f"--arch {' '.join(items)}: the label {label!r} is taken by another row")
        nets[label or f"arch{i}"] = SmallNet(**arch).eval()

    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}")
    import onnxruntime as ort

    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}; batch 1, one thread, median of {args.rounds}")
    runs = {}
    if args.peer != "none":
        runs["peer"] = peer_runner(Path(args.peer))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, net) in enumerate(nets.items()):
            scheme = "ibug68" if net.num_points == 68 else "wflw98"
            size = net.input_size
            if args.int8_accuracy and name in names:
                from smallnet_lit.inference.deploy import calibration_crops

                crops = calibration_crops(args.int8_accuracy, size)
            else:  # random weights: the ranges do not matter for timing
                crops = np.random.default_rng(0).standard_normal((16, 3, size, size)).astype(np.float32)
            paths = {
                "float": export_onnx(net, Path(tmp) / f"{i}.onnx", scheme),
                "int8": export_onnx_int8(net, Path(tmp) / f"{i}_q.onnx", scheme, crops),
            }
            x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
            for kind, path in paths.items():
                s = session(path)
                runs[f"{name} {kind}"] = lambda s=s, x=x: s.run(None, {"image": x})
            accuracy = (
                int8_accuracy(net, args.int8_accuracy, paths, offsets[name])
                if args.int8_accuracy and name in names
                else {}
            )
            rows.append((name, net, accuracy))
        median = interleaved_latency(runs, args.rounds)
    peer = median.get("peer")
    if peer:
        print(f"peer {args.peer}: {1000 * peer:.2f} ms")
    print(
        "model | params | GMACs | float ms (x peer) | int8 ms (x peer)"
        + (" | NME float / int8" if args.int8_accuracy else "")
    )
    for name, net, accuracy in rows:
        cells = []
        for kind in ("float", "int8"):
            ms = 1000 * median[f"{name} {kind}"]
            cells.append(f"{ms:.2f} ms" + (f" ({median[f'{name} {kind}'] / peer:.2f}x)" if peer else ""))
        line = f"{name} | {count_params(net) / 1e6:.2f} M | {count_macs(net) / 1e9:.3f} | {cells[0]} | {cells[1]}"
        if accuracy:
            line += f" | {100 * accuracy['float']:.2f}% / {100 * accuracy['int8']:.2f}% ({accuracy['faces']} faces)"
        if args.training:
            line += f" | training {training_images_per_second(net):.0f} faces/s"
        print(line, flush=True)
    if args.plot:
        if not (peer and args.int8_accuracy):
            p.error("--plot needs --int8-accuracy FACES_DIR and the peer")
        points = [
            (
                Path(str(name)).stem,
                count_macs(net) / 1e9,
                {k: median[f"{name} {k}"] / peer for k in ("float", "int8")},
                acc,
            )
            for name, net, acc in rows
            if acc
        ]
        isa = cpu_description().split(", ")[2].split(" (")[0]  # AVX-512 / AVX2-only
        plot_front(points, args.plot, f"{isa}, ONNX Runtime, 1 thread, batch 1")
        print(f"wrote {args.plot}")


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, error) points no other point beats on both, by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def plot_front(points: list[tuple[str, float, dict[str, float], dict]], path: Path, machine: str) -> None:
    """Validation NME against latency as a multiple of the peer's, float (circles) and int8
    (triangles) of each model joined by a line, and the Pareto front over both: a model ships
    with whichever of its two paths is faster at its accuracy, and on AVX2 that is often float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    every: list[tuple[float, float]] = []
    clusters: list[list[float]] = []  # [x, y, labels so far]
    for name, gmacs, ratio, acc in points:
        xs, ys = [ratio["float"], ratio["int8"]], [100 * acc["float"], 100 * acc["int8"]]
        (line,) = ax.plot(xs, ys, "-", alpha=0.5)
        ax.plot(xs[0], ys[0], "o", color=line.get_color())
        ax.plot(xs[1], ys[1], "^", color=line.get_color())
        every += list(zip(xs, ys, strict=True))
        # models of about the same cost and accuracy: their labels listed under the first one's
        x, y = max(xs), min(ys)
        cluster = next((c for c in clusters if abs(x - c[0]) < 0.3 and abs(y - c[1]) < 0.08), None)
        if cluster is None:
            cluster = [x, y, 0]
            clusters.append(cluster)
        ax.annotate(
            f"{name} ({gmacs:.3f} GMACs)",
            (cluster[0], cluster[1]),
            fontsize=7,
            color=line.get_color(),
            xytext=(8, 2 - 9 * cluster[2]),
            textcoords="offset points",
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        )
        cluster[2] += 1
    front = pareto_front(every)
    if len(front) > 1:
        ax.step(*zip(*front, strict=True), where="post", color="k", lw=0.8, alpha=0.6, label="front")
    ax.axvline(1.0, color="grey", ls="--", lw=0.8)
    ax.axvline(0.5, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("latency / PFLD-GhostOne's (same process, interleaved)")
    ax.set_ylabel("NME on the 300-W validation split (%)")
    ax.set_title(f"accuracy and cost: o float, ^ int8 ({machine})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
