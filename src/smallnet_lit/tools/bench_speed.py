"""CPU speed of SmallNet, per input size: single-face latency (batch 1, one thread) in
PyTorch and ONNX Runtime (float and int8), and throughput at batch 32 (all threads).

    python -m smallnet_lit.tools.bench_speed [--model CKPT] [--sizes 128 160 224] [--repeats 200] [--width-mult 0.5]
                                       [--widths 32 64 128 256] [--depths 1 2 2 2] [--neighbours 0] [--head-stride 8]
                                       [--int8-accuracy FACES_DIR]

Without --model, the 68-point 300w_best configuration (4 stages, --widths, --depths,
--width-mult, --neighbours, --head-stride) is timed with random weights (speed does not depend on the weights). Network only: cropping and detection are not included."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smallnet_lit.inference.deploy import Deployable, export_onnx, export_onnx_int8
from smallnet_lit.model.net import SmallNet, count_macs, count_params


def _time(fn, repeats: int) -> list[float]:
    for _ in range(max(5, repeats // 10)):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def bench(net_kwargs: dict, size: int, repeats: int, state_dict=None) -> dict:
    net = SmallNet(**{**net_kwargs, "input_size": size}).eval()
    if state_dict is not None:
        net.load_state_dict(state_dict)
    model = Deployable(net)
    x1 = torch.randn(1, 3, size, size)
    x32 = torch.randn(32, 3, size, size)
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(net, Path(tmp) / "m.onnx", "ibug68" if net.num_points == 68 else "wflw98")
        one = ort.SessionOptions()
        one.intra_op_num_threads = one.inter_op_num_threads = 1
        s1 = ort.InferenceSession(str(path), one, providers=["CPUExecutionProvider"])
        sall = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        threads = torch.get_num_threads()
        with torch.inference_mode():
            torch.set_num_threads(1)
            pt1 = _time(lambda: model(x1), repeats)
            torch.set_num_threads(threads)
            pt32 = _time(lambda: model(x32), max(10, repeats // 10))
        ort1 = _time(lambda: s1.run(None, {"image": x1.numpy()}), repeats)
        # int8 convolutions: calibrated on random crops here, which is enough for timing
        # (accuracy needs real faces: smallnet-export --onnx-int8 --calibration DIR).
        q_path = export_onnx_int8(
            net,
            Path(tmp) / "q.onnx",
            "ibug68" if net.num_points == 68 else "wflw98",
            np.random.randn(16, 3, size, size),
        )
        q1 = ort.InferenceSession(str(q_path), one, providers=["CPUExecutionProvider"])
        ort_int8 = _time(lambda: q1.run(None, {"image": x1.numpy()}), repeats)
        ort32 = _time(lambda: sall.run(None, {"image": x32.numpy()}), max(10, repeats // 10))
    train_ips = training_images_per_second(net_kwargs, size)
    train_nhwc_ips = training_images_per_second(net_kwargs, size, channels_last=True)
    ms = lambda t: 1000 * statistics.median(t)  # noqa: E731
    return {
        "size": size,
        "params_m": count_params(net) / 1e6,
        "gmacs": count_macs(net) / 1e9,
        "torch_b1_1t_ms": ms(pt1),
        "ort_b1_1t_ms": ms(ort1),
        "ort_int8_b1_1t_ms": ms(ort_int8),
        "torch_b32_fps": 32 / statistics.median(pt32),
        "ort_b32_fps": 32 / statistics.median(ort32),
        "train_ips": train_ips,
        "train_nhwc_ips": train_nhwc_ips,
    }


def training_images_per_second(
    net_kwargs: dict, size: int, steps: int = 6, batch: int = 32, channels_last: bool = False
) -> float:
    """Forward + dual loss + backward + SGD step at batch 32 (network only, all threads),
    in NCHW or (`channels_last`, as `model.channels_last=true` trains) NHWC layout."""
    from smallnet_lit.model.loss import DualLoss

    net = SmallNet(**{**net_kwargs, "input_size": size}).train()
    loss_fn = DualLoss()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    points = torch.rand(batch, net.num_points, 2) * size

    def step() -> None:
        opt.zero_grad()
        loss, _ = loss_fn(net.forward_maps(x), points)
        loss.backward()
        opt.step()

    return batch / statistics.median(_time(step, steps))


def int8_accuracy(net: SmallNet, folder: Path, calibration_faces: int = 200) -> dict[str, float]:
    """NME of the float and the int8 ONNX model on the seeded validation split of an
    iBUG-format folder (int8 calibrated on its training split), eval crops, ONNX Runtime."""
    import onnxruntime as ort

    from smallnet_lit.data.crop import CropConfig
    from smallnet_lit.data.faces import FaceDataset
    from smallnet_lit.data.ibug import IbugFaces
    from smallnet_lit.inference.deploy import calibration_crops
    from smallnet_lit.model.landmarks import get_scheme
    from smallnet_lit.model.metrics import nme_per_face

    scheme = get_scheme(net.num_points)
    val = FaceDataset(IbugFaces(folder, split="val"), net.input_size, CropConfig())
    items = [val[i] for i in range(len(val))]
    x = np.stack([it["image"].numpy() for it in items])
    affine = torch.stack([it["to_photo"] for it in items])

    def photo(points) -> torch.Tensor:
        return torch.as_tensor(points) @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]

    truth = photo(torch.stack([it["points"] for it in items]))
    result = {"faces": len(items)}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "float": export_onnx(net, Path(tmp) / "f.onnx", scheme.name),
            "int8": export_onnx_int8(
                net, Path(tmp) / "q.onnx", scheme.name, calibration_crops(folder, net.input_size, calibration_faces)
            ),
        }
        for name, path in paths.items():
            points = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
            result[name] = nme_per_face(photo(points), truth, scheme.eye_corners).mean().item()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m smallnet_lit.tools.bench_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint whose architecture (and weights) to time")
    p.add_argument("--sizes", type=int, nargs="+", help="input sizes (default: the model's, or 128 160 224)")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--width-mult", type=float, default=1.0, help="without --model: scale the channel widths")
    p.add_argument(
        "--widths", type=int, nargs=4, default=[32, 64, 128, 256], help="without --model: channels of the 4 stages"
    )
    p.add_argument(
        "--depths", type=int, nargs=4, default=[1, 2, 2, 2], help="without --model: convs in each of the 4 stages"
    )
    p.add_argument("--neighbours", type=int, default=0, help="without --model: neighbour regression (SmallNet)")
    p.add_argument(
        "--head-stride", type=int, help="without --model: the head grid's stride (default: the last stage's)"
    )
    p.add_argument(
        "--int8-accuracy", type=Path, help="with --model: NME of float vs int8 ONNX on this iBUG folder's val split"
    )
    args = p.parse_args(argv)
    state = None
    if args.model:
        from smallnet_lit.inference.checkpoints import load_model

        module = load_model(str(args.model))
        kwargs, state = dict(module.hparams.net), module.net.state_dict()
        sizes = args.sizes or [module.net.input_size]
    else:
        kwargs = {
            "num_points": 68,
            "widths": args.widths,
            "depths": args.depths,
            "neighbours": args.neighbours,
            "head_stride": args.head_stride,
            "norm": True,
            "width_mult": args.width_mult,
        }
        sizes = args.sizes or [128, 160, 224]
    print(
        f"CPU: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {__import__('onnxruntime').__version__}, numpy {np.__version__}"
    )
    print(f"net: {kwargs}")
    print(
        "size  params  GMACs  torch b1 1-thread  ORT b1 1-thread  ORT int8 b1  torch b32  ORT b32  training b32  (NHWC)"
    )
    if args.int8_accuracy and args.model:
        acc = int8_accuracy(module.net, args.int8_accuracy)
        print(
            f"NME on {acc['faces']} validation faces of {args.int8_accuracy}: float {100 * acc['float']:.2f}%, "
            f"int8 {100 * acc['int8']:.2f}%"
        )
    for size in sizes:
        r = bench(kwargs, size, args.repeats, state if args.model and size == sizes[0] else None)
        print(
            f"{r['size']:>4}  {r['params_m']:5.2f}M  {r['gmacs']:5.3f}  {r['torch_b1_1t_ms']:14.2f} ms  "
            f"{r['ort_b1_1t_ms']:12.2f} ms  {r['ort_int8_b1_1t_ms']:8.2f} ms  {r['torch_b32_fps']:6.0f}/s  {r['ort_b32_fps']:6.0f}/s  "
            f"{r['train_ips']:9.0f}/s  {r['train_nhwc_ips']:5.0f}/s"
        )


if __name__ == "__main__":
    main()
