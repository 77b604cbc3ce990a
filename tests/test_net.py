import subprocess
import sys

import pytest
import torch

from smallnet_lit.model import codec
from smallnet_lit.model.codec import HeadOutput
from smallnet_lit.model.landmarks import IBUG68
from smallnet_lit.model.net import RepConv, SmallNet, count_macs, count_params
from tests.helpers.heads import neighbour_maps_at_truth


def test_output_shapes_and_grid():
    net = SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1])
    out = net.forward_maps(torch.randn(2, 3, 64, 64))
    assert out.scores.shape == (2, 68, 8, 8) and out.stride == 8
    assert out.offsets.shape == (2, 68, 2, 8, 8) and out.log_delta.shape == (2, 68, 1, 8, 8)
    points, sigma = net(torch.randn(2, 3, 64, 64))
    assert points.shape == (2, 68, 2) and sigma.shape == (2, 68) and (sigma > 0).all()


def test_argmax_decoding_is_cell_centre_plus_offset_times_stride():
    net = SmallNet(num_points=1, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1])
    scores = torch.zeros(1, 1, 8, 8)
    scores[0, 0, 2, 5] = 10.0  # row 2, col 5
    offsets = torch.zeros(1, 1, 2, 8, 8)
    offsets[0, 0, :, 2, 5] = torch.tensor([0.25, -0.5])
    log_delta = torch.full((1, 1, 1, 8, 8), -1.0)
    points, sigma, peak = net.decode(HeadOutput(scores, offsets, log_delta, 8))
    torch.testing.assert_close(points[0, 0], torch.tensor([(5.5 + 0.25) * 8, (2.5 - 0.5) * 8]))
    torch.testing.assert_close(sigma[0, 0], torch.exp(torch.tensor(-1.0)) * 8)
    assert peak.item() > 0.99


def test_soft_decoding_averages_over_cells():
    net = SmallNet(num_points=1, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], decode="soft")
    scores = torch.full((1, 1, 8, 8), -1e4)
    scores[0, 0, 0, 0] = scores[0, 0, 0, 1] = 0.0  # half the mass in each of two cells
    out = HeadOutput(scores, torch.zeros(1, 1, 2, 8, 8), torch.zeros(1, 1, 1, 8, 8), 8)
    points, _, _ = net.decode(out)
    torch.testing.assert_close(points[0, 0], torch.tensor([8.0, 4.0]))


@pytest.mark.parametrize("num_points", [98, 68])
def test_default_model_stays_small(num_points):
    net = SmallNet(num_points=num_points)
    assert net.grid_size == 7
    assert count_params(net) <= 1.5e6
    assert count_macs(net) <= 0.5e9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_size=100), "multiple of the last stage.s stride"),
        (dict(widths=[8, 16], depths=[1]), "depths must give"),
        (dict(pool="median"), "pool must be"),
        (dict(pool_levels=9), "pool_levels"),
        (dict(num_points=0), "num_points"),
        (dict(block="shuffle"), "block must be"),
    ],
)
def test_bad_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SmallNet(**kwargs)


def test_wrong_input_size_names_the_expected_size():
    with pytest.raises(ValueError, match="expects 64x64"):
        SmallNet(input_size=64, widths=[8, 16, 16], depths=[1, 1, 1])(torch.zeros(1, 3, 96, 96))


def test_network_has_no_lightning_dependency():
    # In a fresh interpreter: importing the network must not import Lightning.
    code = "import sys, smallnet_lit.model.net; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_codec_decodes_what_it_encodes():
    """Targets written by `encode` (one-hot cell + offset) decode back to the same points."""

    points = torch.tensor([[[3.0, 60.5], [33.2, 17.9], [63.9, 0.1]]])
    cell, offset, inside = codec.encode(points, stride=8, grid_hw=(8, 8))
    assert inside.all()
    scores = torch.full((1, 3, 64), -1e4).scatter(2, cell[..., None], 0.0).reshape(1, 3, 8, 8)
    offsets = torch.zeros(1, 3, 2, 64)
    offsets.scatter_(3, cell[:, :, None, None].expand(1, 3, 2, 1), offset[..., None])
    out = HeadOutput(scores, offsets.reshape(1, 3, 2, 8, 8), torch.zeros(1, 3, 1, 8, 8), 8)
    for mode in ("argmax", "soft"):
        torch.testing.assert_close(codec.decode(out, mode)[0], points)


def test_neighbour_regression_adds_head_maps_and_loads_old_checkpoints():
    plain = SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], pool_levels=2)
    with_nb = SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], pool_levels=2, neighbours=4)
    out = with_nb.forward_maps(torch.randn(2, 3, 64, 64))
    assert out.neighbour_offsets.shape == (2, 68, 4, 2, 8, 8)
    assert out.neighbour_index.shape == (68, 4)
    assert plain.forward_maps(torch.randn(1, 3, 64, 64)).neighbour_offsets is None
    # The neighbour table is derived from the scheme, not saved: a state_dict has the same keys.
    assert "neighbour_index" not in with_nb.state_dict()
    with pytest.raises(ValueError, match="neighbours must be between 1 and 67"):
        SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], neighbours=68)


def test_neighbour_decoding_averages_each_point_with_its_neighbours_readings():
    """Every reading of point j (its own and those in its neighbours' maps) is built to say
    p_j, except point 0's own, which is off by d: the mean moves d / (1 + votes for 0)."""
    from smallnet_lit.model.shapes import neighbour_table

    k, c, stride = 68, 3, 8
    index = torch.as_tensor(neighbour_table(IBUG68, c))
    points = torch.rand(1, k, 2) * 63
    cell, offset, _ = codec.encode(points, stride, (8, 8))
    scores = torch.full((1, k, 64), -1e4).scatter(2, cell[..., None], 0.0).reshape(1, k, 8, 8)
    offsets = torch.zeros(1, k, 2, 64).scatter(3, cell[:, :, None, None].expand(1, k, 2, 1), offset[..., None])
    d = torch.tensor([2.0, -1.0])  # cell units
    offsets[0, 0, :, cell[0, 0]] += d
    _, nb_offsets = neighbour_maps_at_truth(points, index, stride, 8)  # every neighbour read right
    out = HeadOutput(
        scores.reshape(1, k, 8, 8),
        offsets.reshape(1, k, 2, 8, 8),
        torch.zeros(1, k, 1, 8, 8),
        stride,
        neighbour_offsets=nb_offsets,
        neighbour_index=index,
    )
    votes_for_0 = int((index == 0).sum())
    assert votes_for_0 > 0
    expected = points.clone()
    expected[0, 0] += d * stride / (1 + votes_for_0)
    for mode in ("argmax", "soft"):
        torch.testing.assert_close(codec.decode(out, mode)[0], expected, atol=1e-4, rtol=0)


def test_finer_head_grid_pools_finer_levels_and_upsamples_coarser_ones():
    net = SmallNet(num_points=5, input_size=64, widths=[8, 16, 16, 24], depths=[1, 1, 1, 1], head_stride=8)
    assert net.stride == 8 and net.grid_size == 8
    out = net.forward_maps(torch.randn(2, 3, 64, 64))
    assert out.scores.shape == (2, 5, 8, 8) and out.stride == 8
    # The last stage (stride 16) reaches the head through a nearest 2x upsampling: in a head map
    # fed by it alone, each 2x2 block of cells is one value.
    features = torch.randn(1, 24, 4, 4)
    upsampled = net.pools[-1](features)
    torch.testing.assert_close(upsampled[..., ::2, ::2], features)
    torch.testing.assert_close(upsampled[..., 1::2, 1::2], features)
    points, sigma = net(torch.randn(2, 3, 64, 64))
    assert points.shape == (2, 5, 2) and (sigma > 0).all()


@pytest.mark.parametrize("head_stride", [3, 32, 1])
def test_head_stride_must_be_a_power_of_two_within_the_stages(head_stride):
    with pytest.raises(ValueError, match="head_stride must be a power of two"):
        SmallNet(input_size=64, widths=[8, 16, 16, 24], depths=[1, 1, 1, 1], head_stride=head_stride)


def test_soft_decoding_sigma_is_the_mixtures_standard_deviation():
    """Half the mass in each of two cells one cell apart, each with delta 1 cell: the point is
    between them and its per-axis variance is 1 (the cells' own) + 0.25 / 2 (their spread in x,
    averaged over the two axes)."""
    net = SmallNet(num_points=1, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], decode="soft")
    scores = torch.full((1, 1, 8, 8), -1e4)
    scores[0, 0, 0, 0] = scores[0, 0, 0, 1] = 0.0
    out = HeadOutput(scores, torch.zeros(1, 1, 2, 8, 8), torch.zeros(1, 1, 1, 8, 8), 8)
    _, sigma, _ = net.decode(out)
    torch.testing.assert_close(sigma[0, 0], torch.tensor(1.125).sqrt() * 8)
    # All the mass in one cell: the cell's own delta, as argmax reads it.
    scores[0, 0, 0, 1] = -1e4
    _, soft_sigma, _ = net.decode(out)
    _, argmax_sigma, _ = net.decode(out, "argmax")
    torch.testing.assert_close(soft_sigma, argmax_sigma)
    torch.testing.assert_close(soft_sigma[0, 0], torch.tensor(8.0))


def _trained_batchnorm(net: SmallNet, seed: int = 0) -> SmallNet:
    """BatchNorm statistics and affine weights away from their initial identity, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.4 * torch.rand(n, generator=g) - 0.2)
    return net.eval()


@pytest.mark.parametrize("block", ["conv", "dw", "ghost"])
def test_reparameterized_net_folds_into_the_plain_stack_with_equal_outputs(block):
    kwargs = dict(num_points=68, input_size=64, widths=[8, 16, 24], depths=[2, 2, 1], block=block, decode="soft")
    net = _trained_batchnorm(SmallNet(**kwargs, reparam=True, norm=True))
    plain = net.deployed()
    # The deployed net is exactly the plain stack: same modules and state_dict keys, no BatchNorm.
    assert not plain.reparam and not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert plain.state_dict().keys() == SmallNet(**kwargs).state_dict().keys()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        a, b = net.forward_maps(x), plain.forward_maps(x)
    for name in ("scores", "offsets", "log_delta"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-4, rtol=0)
    # Costs are the deployed net's; the training form has the extra branches.
    assert count_macs(net) == count_macs(SmallNet(**kwargs)) and count_params(net) == count_params(plain)
    assert sum(p.numel() for p in net.parameters()) > count_params(net)


@pytest.mark.parametrize("block", ["conv", "dw", "ghost"])
def test_a_trained_plain_net_grows_branches_that_start_at_zero(block):
    """`grown` (init_from a plain checkpoint with model.net.reparam=true) adds RepVGG branches to a
    trained net without changing what it computes, in training and eval, and they do train."""
    kwargs = dict(num_points=68, input_size=64, widths=[8, 16, 24], depths=[2, 2, 1], block=block, decode="soft")
    plain = _trained_batchnorm(SmallNet(**kwargs, norm=True))
    grown = plain.grown()
    assert grown.reparam and any(isinstance(m, RepConv) for m in grown.modules())
    x = torch.randn(3, 3, 64, 64)
    for training in (False, True):
        plain.train(training), grown.train(training)
        a, b = plain.forward_maps(x), grown.forward_maps(x)
        for name in ("scores", "offsets", "log_delta"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=0)
    b.scores.logsumexp(-1).sum().backward()
    branch_grads = [
        m.identity.weight.grad for m in grown.modules() if isinstance(m, RepConv) and m.identity is not None
    ]
    assert branch_grads and all(g is not None for g in branch_grads) and any(g.abs().sum() > 0 for g in branch_grads)
    with torch.no_grad():
        folded = grown.eval().deployed().forward_maps(x).scores
        torch.testing.assert_close(folded, plain.eval().forward_maps(x).scores, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="plain net with BatchNorm"):
        SmallNet(**kwargs).grown()  # no BatchNorm to carry the main branch


def test_ghost_modules_make_half_the_channels_cheaply_and_export(tmp_path):
    """block=ghost: each conv after the stem is a GhostConv whose 3x3 conv makes half of the
    channels and a depthwise 3x3 conv on them the rest, at about half the plain stack's MACs;
    ONNX Runtime computes what torch does."""
    import onnxruntime as ort

    from smallnet_lit.inference.deploy import Deployable, export_onnx
    from smallnet_lit.model.net import GhostConv

    kwargs = dict(num_points=68, input_size=64, widths=[8, 16, 32], depths=[2, 2, 1], decode="soft")
    ghost, plain = SmallNet(**kwargs, block="ghost").eval(), SmallNet(**kwargs)
    modules = [m for m in ghost.modules() if isinstance(m, GhostConv)]
    assert len(modules) == 4  # every conv but the stem
    x = torch.randn(2, 3, 64, 64)
    stage = ghost.stages[1][0]
    half = stage.primary(ghost.stages[0](x))
    torch.testing.assert_close(stage(ghost.stages[0](x)), torch.cat([half, stage.cheap(half)], dim=1))
    assert stage.cheap[0].groups == 8 and stage.primary[0].out_channels == 8  # 16 channels, half each way
    shared = 3 * 9 * 8 * 32 * 32 + ghost.head.in_channels * ghost.head.out_channels * ghost.grid_size**2  # stem, head
    assert 0.4 < (count_macs(ghost) - shared) / (count_macs(plain) - shared) < 0.6
    with torch.no_grad():
        expected = Deployable(ghost)(x)[0]
    session = ort.InferenceSession(str(export_onnx(ghost, tmp_path / "g.onnx", "ibug68")))
    points = session.run(None, {"image": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(points), expected, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="widths must be even"):
        SmallNet(**{**kwargs, "widths": [8, 16, 27]}, block="ghost")


def test_reparameterized_exports_are_folded(tmp_path):
    import onnx
    import onnxruntime as ort

    from smallnet_lit.inference.deploy import Deployable, export_onnx, export_torchscript

    kwargs = dict(num_points=68, input_size=64, widths=[8, 16, 24], depths=[2, 2, 1], decode="soft")
    net = _trained_batchnorm(SmallNet(**kwargs, reparam=True, norm=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = Deployable(net)(x)[0]
        torch.testing.assert_close(net(x)[0], expected, atol=1e-3, rtol=0)  # unfolded == folded, in pixels
    onnx_path = export_onnx(net, tmp_path / "m.onnx", "ibug68")
    ops = [n.op_type for n in onnx.load(str(onnx_path)).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 5 + 1  # five 3x3 convs and the head
    points = ort.InferenceSession(str(onnx_path)).run(None, {"image": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(points), expected, atol=1e-3, rtol=0)
    scripted = torch.jit.load(str(export_torchscript(net, tmp_path / "m.pt")))
    assert not any(
        isinstance(m, torch.jit.RecursiveScriptModule) and m.original_name == "RepConv" for m in scripted.modules()
    )
    torch.testing.assert_close(scripted(x)[0], expected, atol=1e-3, rtol=0)


def test_reparameterized_net_trains_in_channels_last():
    """NHWC training (model.channels_last) of the branches; torch 2.13 crashed on a strided 1x1 conv of 3 channels."""
    net = SmallNet(num_points=4, input_size=64, widths=[8, 16, 24], depths=[2, 2, 1], reparam=True, norm=True)
    net = net.to(memory_format=torch.channels_last).train()
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    out = net.forward_maps(x)
    (out.scores.sum() + out.offsets.sum()).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_channels_last_computes_the_same_loss_and_gradients():
    from smallnet_lit.model.module import LandmarkModule

    torch.manual_seed(0)
    kwargs = dict(
        net=dict(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1], norm=True), scheme="ibug68"
    )
    plain, nhwc = LandmarkModule(**kwargs), LandmarkModule(**kwargs, channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    nhwc.net.to(memory_format=torch.channels_last)  # what on_fit_start does
    batch = {"image": torch.randn(4, 3, 64, 64), "points": torch.rand(4, 68, 2) * 60, "valid": torch.ones(4, 68)}
    assert nhwc._images(batch).is_contiguous(memory_format=torch.channels_last)
    losses = []
    for module in (plain, nhwc):
        out = module.net.forward_maps(module._images(batch))
        loss, _ = module.loss_fn(out, batch["points"], batch["valid"])
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    torch.testing.assert_close(plain.net.head.weight.grad, nhwc.net.head.weight.grad, rtol=1e-3, atol=1e-5)


def test_bench_speed_reads_an_architecture_as_hydra_writes_it():
    from smallnet_lit.tools.bench_speed import parse_arch

    base = SmallNet(num_points=68, input_size=64, widths=[8, 16, 16], depths=[1, 1, 1]).config
    for widths in ("[16,32,32]", "16,32,32"):
        label, arch = parse_arch([f"widths={widths}", "block=dw", "reparam=true"], base)
        assert (arch["widths"], arch["block"], arch["reparam"]) == ([16, 32, 32], "dw", True)
        assert label == f"widths={widths} block=dw reparam=true"
    label, arch = parse_arch(["label=H80", "input_size=80"], base)
    assert (label, arch["input_size"]) == ("H80", 80) and "label" not in arch
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_arch(["widht=8"], base)


def test_bench_speed_architectures_build_on_the_shipped_default_only():
    """An --arch row is the net it names, whichever MODEL comes first: the fast model's
    width_mult (0.75) once scaled every --arch's widths (its H96-net row had 0.41 M parameters)."""
    from smallnet_lit.tools.bench_speed import architecture_base, parse_arch

    _, arch = parse_arch(
        ["input_size=96", "widths=24,48,96,160", "depths=2,3,3,2", "head_stride=8"], architecture_base()
    )
    net = SmallNet(**arch)
    assert net.config["widths"] == [24, 48, 96, 160] and arch["width_mult"] == 1.0
    assert count_macs(net) == pytest.approx(0.098e9, rel=0.02)
    assert count_params(net) == pytest.approx(0.72e6, rel=0.02)


def test_bench_speed_front_takes_float_and_int8_points_alike(tmp_path):
    """On AVX2 float is often the faster path: the front is drawn over both, so a float point
    that beats every int8 one is on it."""
    from smallnet_lit.tools.bench_speed import pareto_front, plot_front

    points = [(0.91, 3.51), (0.97, 3.53), (0.49, 3.83), (0.50, 3.86), (3.9, 3.19), (4.1, 3.19), (2.0, 3.6)]
    assert pareto_front(points) == [(0.49, 3.83), (0.91, 3.51), (3.9, 3.19)]
    rows = [
        ("near-a", 0.036, {"float": 0.49, "int8": 0.50}, {"float": 0.0383, "int8": 0.0386}),
        ("near-b", 0.036, {"float": 0.49, "int8": 0.50}, {"float": 0.0385, "int8": 0.0385}),
        ("big", 0.396, {"float": 3.9, "int8": 4.1}, {"float": 0.0319, "int8": 0.0319}),
    ]
    plot_front(rows, tmp_path / "front.png", "test machine")
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
