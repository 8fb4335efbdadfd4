"""Which torch device a workload trains on: the GPU where one is present, else the CPU."""

from __future__ import annotations

import torch

from fogros_dist.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    if name not in DEVICE_CHOICES:
        msg = f"device {name!r} is not supported: use one of {', '.join(DEVICE_CHOICES)}"
        raise ConfigError(msg)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        msg = "device 'cuda' was asked for but torch sees no GPU here: use --device cpu (or auto)"
        raise ConfigError(msg)
    return torch.device(name)
