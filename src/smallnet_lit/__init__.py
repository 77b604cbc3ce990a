"""SmallNet face landmarks: `import smallnet_lit as sl; faces = sl.load("smallnet_300w")("photo.jpg")`."""

from __future__ import annotations

__all__ = ["FaceLandmarks", "Landmarker", "load"]


def __getattr__(name: str):
    # Lazy: `import smallnet_lit.train` and the CLI do not pay for the inference imports.
    if name in __all__:
        from smallnet_lit.inference import api, predictor

        return getattr(api, name, None) or getattr(predictor, name)
    raise AttributeError(f"module 'smallnet_lit' has no attribute {name!r}")
