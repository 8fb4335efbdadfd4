"""The behaviour-cloning policy: an MLP from one observation to an open-loop chunk of actions.

Predicting the next ``chunk`` actions and executing them without looking (replanning every
``chunk`` steps) is what RB2 found to beat closed-loop cloning and what ACT builds on: a chunk
averages out the demonstrator's per-step noise and the policy is queried ``chunk`` times less
often. The normalisation statistics are buffers of the module, so they live in its state dict.

A saved policy (:func:`save_policy`) is a plain dictionary of tensors, numbers and strings (the
mapping and config as JSON), loaded with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fogros_dist.errors import ConfigError
from fogros_dist.spec import from_json, to_json
from fogros_dist.workloads.policy.dataset import BagMapping, FloatArray, Normalizer

__all__ = ["FORMAT", "ChunkPolicy", "LoadedPolicy", "PolicyConfig", "load_policy", "save_policy"]

FORMAT = "fogros_dist.policy/1"


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """The policy network's shape.

    Attributes:
        observation_dim: length of the observation vector.
        action_dim: length of one action.
        chunk: actions predicted per observation.
        hidden: width of each hidden layer.
        layers: number of hidden layers.
    """

    observation_dim: int
    action_dim: int
    chunk: int = 8
    hidden: int = 256
    layers: int = 3

    def __post_init__(self) -> None:
        for name in ("observation_dim", "action_dim", "chunk", "hidden", "layers"):
            if getattr(self, name) < 1:
                msg = f"policy {name} ({getattr(self, name)}) must be >= 1"
                raise ConfigError(msg)


class ChunkPolicy(nn.Module):
    """MLP: normalised observation ``(B, D)`` -> normalised action chunk ``(B, chunk, A)``.

    Args:
        config: the network's shape.
        normalizer: statistics the policy normalises inputs and de-normalises outputs with.
    """

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    act_mean: torch.Tensor
    act_std: torch.Tensor

    def __init__(self, config: PolicyConfig, normalizer: Normalizer) -> None:
        super().__init__()
        if (
            len(normalizer.observation_mean) != config.observation_dim
            or len(normalizer.action_mean) != config.action_dim
        ):
            msg = (
                f"normalizer has {len(normalizer.observation_mean)} observation and "
                f"{len(normalizer.action_mean)} action dimensions, the policy {config.observation_dim} and "
                f"{config.action_dim}: fit it on the same data"
            )
            raise ConfigError(msg)
        self.config = config
        self.normalizer = normalizer
        layers: list[nn.Module] = []
        width = config.observation_dim
        for _ in range(config.layers):
            # LayerNorm keeps the deep MLP well conditioned at the high learning rates short runs need.
            layers += [nn.Linear(width, config.hidden), nn.LayerNorm(config.hidden), nn.GELU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.chunk * config.action_dim))
        self.net = nn.Sequential(*layers)
        self.register_buffer("obs_mean", torch.tensor(normalizer.observation_mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.tensor(normalizer.observation_std, dtype=torch.float32))
        self.register_buffer("act_mean", torch.tensor(normalizer.action_mean, dtype=torch.float32))
        self.register_buffer("act_std", torch.tensor(normalizer.action_std, dtype=torch.float32))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Normalised observations ``(B, D)`` -> normalised chunks ``(B, chunk, A)``."""
        out: torch.Tensor = self.net(observations)
        return out.view(-1, self.config.chunk, self.config.action_dim)

    @torch.no_grad()
    def predict(self, observations: FloatArray) -> FloatArray:
        """Raw observations ``(D,)`` or ``(B, D)`` -> action chunks ``(B, chunk, A)`` in action units.

        Raises:
            ValueError: the observations do not have ``observation_dim`` columns.
        """
        rows = np.atleast_2d(np.asarray(observations, dtype=np.float32))
        if rows.shape[1] != self.config.observation_dim:
            msg = f"observation has {rows.shape[1]} values, the policy needs {self.config.observation_dim}"
            raise ValueError(msg)
        x = (torch.from_numpy(rows) - self.obs_mean) / self.obs_std
        # No dropout or batch norm: train and eval mode compute the same, so no mode switch here.
        chunks = self(x) * self.act_std + self.act_mean
        result: FloatArray = chunks.numpy().astype(np.float64)
        return result


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedPolicy:
    """A policy read back from disk, with what serving it needs.

    Attributes:
        model: the network, in eval mode.
        mapping: the topics and fields it was trained on.
        action_low: lower bound of each action component.
        action_high: upper bound of each action component.
        metrics: the evaluation metrics recorded when it was saved.
        path: where it was loaded from.
    """

    model: ChunkPolicy
    mapping: BagMapping
    action_low: FloatArray
    action_high: FloatArray
    metrics: dict[str, float]
    path: Path


def save_policy(
    path: Path,
    *,
    model: ChunkPolicy,
    mapping: BagMapping,
    action_low: FloatArray,
    action_high: FloatArray,
    metrics: dict[str, float] | None = None,
) -> None:
    """Write ``model`` and what serving needs to ``path`` (parent folders are created).

    Written to a temporary file and renamed, so a node never loads half a policy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": to_json(model.config),
        "normalizer": to_json(model.normalizer),
        "mapping": to_json(mapping),
        "action_low": [float(v) for v in action_low],
        "action_high": [float(v) for v in action_high],
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "state_dict": model.state_dict(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_policy(path: Path) -> LoadedPolicy:
    """Read a policy written by :func:`save_policy`.

    Raises:
        ConfigError: the file is missing (the message names the path and how to make one) or is
            not a fogros_dist policy.
    """
    if not path.is_file():
        msg = (
            f"policy model {path} does not exist: "
            "train one with `fogros-dist train policy` or pass -p model:=PATH"
        )
        raise ConfigError(msg)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle/zip errors of many kinds for foreign files
        msg = (
            f"{path} is not a readable policy ({type(err).__name__}): retrain with `fogros-dist train policy`"
        )
        raise ConfigError(msg) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        msg = f"{path} has format {found!r}, expected {FORMAT!r}: retrain with `fogros-dist train policy`"
        raise ConfigError(msg)
    config = from_json(PolicyConfig, payload["config"])
    normalizer = from_json(Normalizer, payload["normalizer"])
    model = ChunkPolicy(config, normalizer)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return LoadedPolicy(
        model=model,
        mapping=from_json(BagMapping, payload["mapping"]),
        action_low=np.asarray(payload["action_low"], dtype=np.float64),
        action_high=np.asarray(payload["action_high"], dtype=np.float64),
        metrics={str(k): float(v) for k, v in json.loads(payload["metrics"]).items()},
        path=path,
    )
