"""Quantization-aware fine-tuning (model.quant): the simulated int8 is the export's, and a
RepVGG checkpoint fine-tunes as its deployed net."""

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from smallnet_lit.model import quant
from smallnet_lit.model.checkpoints import load_net
from smallnet_lit.model.net import SmallNet
from smallnet_lit.train import start_from, train
from smallnet_lit.training.instantiate import model_from
from tests.test_net import _trained_batchnorm
from tests.test_train import ONE_SHORT_EPOCH

KWARGS = dict(num_points=68, input_size=64, widths=[8, 16, 24], depths=[2, 2, 1], decode="soft")


def _simulated_scales(net: SmallNet) -> list[float]:
    """The uint8 scale of every tensor the simulation rounds, in the order the net makes them."""
    scales = []
    for module in net.stages.modules():
        wrapper = module.__dict__.get("forward")
        for name in ("input_range", "output_range", "range"):
            if (r := getattr(wrapper, name, None)) is not None:
                scales.append(float(r.high - r.low) / 255)
    return scales


def test_simulated_int8_follows_the_onnx_int8_export(tmp_path):
    """After one calibration batch, the net with fake quantization rounds the same tensors as
    ONNX Runtime's int8 export of the same weights, on the same scales, and its points follow
    the export's far closer than the float net's do."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from smallnet_lit.inference.deploy import export_onnx_int8

    torch.manual_seed(0)
    net = _trained_batchnorm(SmallNet(**KWARGS, reparam=True, norm=True)).deployed().eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)  # peaked maps: points that int8 can move
    x = torch.rand(32, 3, 64, 64) * 4 - 2
    path = export_onnx_int8(net, tmp_path / "m.onnx", "ibug68", calibration=x.numpy())
    int8 = ort.InferenceSession(str(path)).run(["points"], {"image": x.numpy()})[0]
    graph = onnx.load(str(path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    exported = [float(values[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        float_points = net(x)[0].numpy()
        assert quant.attach(net) == 5  # the five 3x3 convs; the head stays float, as exported
        net.train()(x)  # the calibration batch: its min-max ranges, as the export's
        simulated = net.eval()(x)[0].numpy()
    # image, 5 conv outputs, 4 activations that feed a conv (the last one feeds only the head)
    assert len(exported) == len(_simulated_scales(net)) == 10
    # the export calibrates on the float net, the simulation on its rounded inputs: close, not equal
    np.testing.assert_allclose(_simulated_scales(net), exported, rtol=0.03)
    float_gap, sim_gap = np.abs(float_points - int8).mean(), np.abs(simulated - int8).mean()
    assert float_gap > 0.05  # int8 moves the points (pixels) ...
    assert sim_gap < 0.7 * float_gap, (sim_gap, float_gap)  # ... and the simulation follows it
    assert net.state_dict().keys() == state.keys()  # nothing added to the checkpoint
    quant.detach(net)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x)[0].numpy(), float_points)


def test_fake_quantization_passes_gradients_and_refuses_nets_not_deployed():
    net = SmallNet(**KWARGS).train()
    quant.attach(net, weight_bits=8)
    out = net.forward_maps(torch.randn(2, 3, 64, 64))
    (out.scores.sum() + out.offsets.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(ValueError, match="deployed net"):
        quant.attach(SmallNet(**KWARGS, reparam=True, norm=True))
    with pytest.raises(ValueError, match="weight_bits must be 7"):
        quant.attach(SmallNet(**KWARGS), weight_bits=4)
    with pytest.raises(ValueError, match="not 'ghost'"):
        quant.attach(SmallNet(**KWARGS, block="ghost"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ("{bits:7}", "unknown settings \\['bits'\\]"),
        ("{weight_bits:4}", "weight_bits must be 7"),
        ("{momentum:0}", "momentum"),
    ],
)
def test_a_bad_quant_aware_setting_is_refused_when_the_model_is_made(make_cfg, setting, message):
    cfg = make_cfg(["model.net.norm=false", f"model.quant_aware={setting}"])
    with pytest.raises(ValueError, match=message):
        model_from(cfg.model, "wflw98")


def test_init_from_folds_a_repvgg_checkpoint_for_quantization_aware_fine_tuning(make_cfg, tmp_path):
    """`init_from=REPVGG.ckpt model.net.reparam=false model.net.norm=false` starts from the
    folded weights (same outputs), and a quantization-aware run trains and saves a plain checkpoint."""
    rep = make_cfg(["model.net.reparam=true", "model.net.norm=true", *ONE_SHORT_EPOCH])
    with open_dict(rep):
        rep.paths.output_dir = str(tmp_path / "rep")
    train(rep)
    ckpt = tmp_path / "rep" / "checkpoints" / "last.ckpt"

    cfg = make_cfg(
        [
            "model.net.reparam=false",
            "model.net.norm=false",
            f"init_from={ckpt}",
            "model.quant_aware={weight_bits:7}",
            *ONE_SHORT_EPOCH,
        ]
    )
    model = model_from(cfg.model, "wflw98")
    start_from(model, str(ckpt))
    repvgg = load_net(ckpt).net
    assert repvgg.reparam and not model.net.reparam
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.net.eval()(x)[0], repvgg(x)[0], atol=1e-3, rtol=0)

    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "qat")
    metrics = train(cfg)
    assert np.isfinite(metrics["val/nme"])
    tuned = torch.load(tmp_path / "qat" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert tuned["state_dict"].keys() == model.state_dict().keys()  # the plain net's, no fake-quant state
    assert tuned["hyper_parameters"]["net"]["reparam"] is False

    with pytest.raises(ValueError, match="needs the deployed net"):
        model_from(make_cfg(["model.net.reparam=true", "model.quant_aware={weight_bits:7}"]).model, "wflw98")
