"""The behaviour-cloning training loop: masked L1 on normalised action chunks.

The loop only sees a model, two :class:`~fogros_dist.workloads.policy.dataset.ChunkDataset`
objects and a sampler of indices, so distributed data-parallel training can wrap the model in
DDP and pass a DistributedSampler without touching this file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.policy.dataset import ChunkDataset

__all__ = ["TrainConfig", "TrainResult", "chunk_loss", "train_policy"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training samples.
        batch_size: samples per step.
        lr: peak learning rate (AdamW, cosine decay to 5% of it).
        weight_decay: AdamW weight decay.
        seed: seeds initialisation and sample order.
    """

    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            msg = (
                f"epochs ({self.epochs}) and batch_size ({self.batch_size}) must be >= 1 "
                f"and lr ({self.lr}) > 0"
            )
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What training measured. Losses are masked L1 on normalised actions."""

    train_loss: float
    val_loss: float
    epochs: int
    steps: int
    seconds: float


def chunk_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the valid (unmasked) actions of each chunk.

    L1 rather than MSE, as ACT found: it tracks the demonstrator's precise final approach
    instead of blurring it toward the mean.
    """
    weights = mask.unsqueeze(-1).to(predicted.dtype)
    total = (predicted - target).abs().mul(weights).sum()
    return total / (weights.sum() * predicted.shape[-1]).clamp_min(1.0)


@torch.no_grad()
def _evaluate(model: nn.Module, data: ChunkDataset, batch_size: int) -> float:
    total, count = 0.0, 0.0
    device = next(model.parameters()).device
    for start in range(0, len(data), batch_size):
        obs = data.observations[start : start + batch_size].to(device)
        act = data.actions[start : start + batch_size].to(device)
        mask = data.mask[start : start + batch_size].to(device)
        valid = float(mask.sum()) * act.shape[-1]
        total += float(chunk_loss(model(obs), act, mask)) * valid
        count += valid
    return total / max(count, 1.0)


def train_policy(
    model: nn.Module,
    *,
    train: ChunkDataset,
    val: ChunkDataset,
    config: TrainConfig,
    sampler: Sampler[int] | None = None,
    report: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train``; measure ``val`` after every epoch.

    Args:
        model: maps normalised observations ``(B, D)`` to normalised chunks ``(B, H, A)``.
        train: training samples.
        val: validation samples (whole episodes the model never trains on).
        config: optimisation settings.
        sampler: indices into ``train`` per epoch (a DistributedSampler under DDP: its
            ``set_epoch`` is called before each epoch, so each epoch shuffles anew); a seeded
            RandomSampler if None.
        report: called with a progress line about ten times per run.

    Returns:
        The final training and validation loss, steps and wall time.

    Raises:
        ConfigError: the training loss stopped being finite (it diverged).
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    order = sampler if sampler is not None else RandomSampler(range(len(train)), generator=generator)
    batches = BatchSampler(order, batch_size=config.batch_size, drop_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    device = next(model.parameters()).device
    total_steps = config.epochs * len(batches)
    min_lr = 0.05 * config.lr
    t0 = time.monotonic()
    step = 0
    train_loss = float("nan")
    val_loss = float("nan")
    every = max(1, config.epochs // 10)
    for epoch in range(1, config.epochs + 1):
        set_epoch = getattr(order, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch - 1)
        model.train()
        running, seen = 0.0, 0
        for indices in batches:
            # Cosine decay per step: short runs still end at a small learning rate.
            lr = min_lr + 0.5 * (config.lr - min_lr) * (1.0 + math.cos(math.pi * step / max(1, total_steps)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = torch.as_tensor(indices)
            loss = chunk_loss(
                model(train.observations[index].to(device)),
                train.actions[index].to(device),
                train.mask[index].to(device),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            running += float(loss.detach()) * len(indices)
            seen += len(indices)
            step += 1
        train_loss = running / max(seen, 1)
        if not math.isfinite(train_loss):
            # Every later step would only carry the nan on; stop with the cause and the fix.
            msg = (
                f"training diverged: the loss is {train_loss} in epoch {epoch}: lower the learning rate "
                f"(--lr, now {config.lr:g}) or check the data's scale"
            )
            raise ConfigError(msg)
        model.eval()
        val_loss = _evaluate(model, val, 4096)
        if report is not None and (epoch % every == 0 or epoch == config.epochs):
            report(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
    return TrainResult(
        train_loss=train_loss,
        val_loss=val_loss,
        epochs=config.epochs,
        steps=step,
        seconds=time.monotonic() - t0,
    )
