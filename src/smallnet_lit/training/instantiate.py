"""Build the run's objects from Hydra config groups."""

from __future__ import annotations

import inspect
import logging

import hydra
import lightning as L
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from smallnet_lit.data.datamodule import FaceDataModule
from smallnet_lit.data.errors import BadInputError
from smallnet_lit.model.landmarks import get_scheme
from smallnet_lit.model.module import LandmarkModule
from smallnet_lit.training.config import plain

log = logging.getLogger(__name__)


def datamodule_from(cfg: DictConfig, input_size: int, only_split: str | None = None) -> FaceDataModule:
    """The DataModule of a data config for a network of `input_size` pixels (a crop cache of
    size null gets twice that); with `only_split`, the other splits' sources are not built
    (evaluation needs no training list on disk). Configs link one way: the data config reads
    nothing of the model's; this is where the two meet."""
    with open_dict(cfg):  # in place: the split configs read ${data.cache} from the same node
        cfg.input_size = input_size
        if cfg.get("cache") is not None and cfg.cache.get("size") is None:
            cfg.cache.size = 2 * input_size
    cfg = OmegaConf.create(plain(cfg))  # resolve interpolations before dropping what they read
    # The rest of a data config (cache, include, sources, ...) is what its split configs
    # interpolate: the DataModule gets only its own arguments.
    arguments = inspect.signature(hydra.utils.get_class(cfg._target_)).parameters
    for key in [k for k in cfg if k != "_target_" and k not in arguments]:
        cfg.pop(key)
    if only_split is not None:
        for split in ("train", "val", "test", "all"):
            if split != only_split:
                cfg[split] = None
    try:
        return hydra.utils.instantiate(cfg, _convert_="all")
    except InstantiationException as e:
        # Hydra quotes the cause with repr(): a list of bad files would print as one line
        # with literal "\n". Our data errors already name the file and line: raise them as they are.
        if isinstance(e.__cause__, BadInputError | OSError):
            raise e.__cause__ from None
        raise


def model_from(cfg: DictConfig, scheme: str, attribute_names: tuple[str, ...] | list[str] = ()) -> LandmarkModule:
    """The LightningModule of a model config for data of landmark `scheme` (its point count
    comes from the scheme) with these attribute flags."""
    # Plain containers (not DictConfig) so the checkpoint reloads without Hydra.
    kwargs = plain(cfg)
    target = hydra.utils.get_class(kwargs.pop("_target_"))
    if kwargs.setdefault("scheme", scheme) != scheme:
        raise ValueError(f"model.scheme={kwargs['scheme']!r} but the data's landmarks follow {scheme!r}")
    kwargs["net"] = {"num_points": get_scheme(scheme).num_points, **kwargs.get("net", {})}
    kwargs.setdefault("attribute_names", list(attribute_names))
    return target(**kwargs)


def callbacks_from(cfg: DictConfig | None) -> list[L.Callback]:
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]
