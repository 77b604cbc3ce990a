"""Parameter count and MACs of the configured SmallNet:
`python -m smallnet_lit.tools.stats [+experiment=NAME] [model.net.input_size=256 ...]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from smallnet_lit.model.landmarks import get_scheme
from smallnet_lit.model.net import SmallNet, count_macs, count_params
from smallnet_lit.training.config import config_dir, plain


def describe(net_kwargs: dict) -> str:
    net = SmallNet(**net_kwargs)
    return (
        f"SmallNet: {net.num_points} points, input {net.input_size}x{net.input_size}, "
        f"head grid {net.grid_size}x{net.grid_size} (stride {net.stride}), "
        f"{count_params(net) / 1e6:.3f} M parameters, {count_macs(net) / 1e9:.3f} GMACs per face"
    )


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> None:
    # the point count is the data's scheme's, as in training
    print(describe({"num_points": get_scheme(cfg.data.scheme).num_points, **plain(cfg.model.net)}))


if __name__ == "__main__":
    main()
