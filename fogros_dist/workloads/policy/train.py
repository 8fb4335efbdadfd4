"""The behaviour-cloning training loop: masked L1 on normalised action chunks.

The loop only sees a model, two :class:`~fogros_dist.workloads.policy.dataset.ChunkDataset`
objects and a sampler of indices: a fleet's rank (``PolicyWorkload.train_distributed``) passes
the model in DDP, a DistributedSampler, the comm meter and the run's checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from fogros_dist.errors import ConfigError
from fogros_dist.train.checkpoint import Checkpointer
from fogros_dist.train.comm_meter import CommMeter
from fogros_dist.train.epoch_loop import across_ranks, epoch_line, heldout_line, unwrapped
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
        warmup_fraction: the share of steps that ramp the learning rate up from lr/25 before the
            cosine decay (the linear scaling rule's warm-up on a fleet; 0: none).
    """

    epochs: int = 60
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    warmup_fraction: float = 0.0

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


def _learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """A linear ramp from lr/25 over the warm-up's steps, then cosine decay to 5 % of lr (short
    runs still end at a small learning rate)."""
    warmup = round(config.warmup_fraction * total_steps)
    if step < warmup:
        return config.lr * (0.04 + 0.96 * step / warmup)
    min_lr = 0.05 * config.lr
    progress = (step - warmup) / max(1, total_steps - warmup)
    return min_lr + 0.5 * (config.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _resume(
    checkpoint: Checkpointer | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    report: Callable[[str], None] | None,
) -> int:
    """Load the run's checkpoint, if torchrun restarted the workers after one: the epochs done."""
    state = checkpoint.restore() if checkpoint is not None else None
    if state is None:
        return 0
    unwrapped(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    done = int(state["epoch"])
    if report is not None:
        report(f"train: resumed after epoch {done}/{epochs} from the run's checkpoint")
    return done


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
    checkpoint: Checkpointer | None = None,
    meter: CommMeter | None = None,
    after_step: Callable[[bool], None] | None = None,
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
        report: called with a progress line about ten times per run; on a fleet (``meter``
            given), also with the run report's epoch line after every epoch.
        checkpoint: where the run's state is saved after every epoch and, when torchrun restarted
            the workers (a machine left or joined), resumed from: the model, the optimizer and the
            epochs done; the cosine schedule goes on at the same fraction of the run, whatever the
            new world size makes of the steps per epoch.
        meter: counts each optimizer step's gradient communication (the DDP model's, from
            :func:`fogros_dist.train.data_parallel.data_parallel`).
        after_step: called after each optimizer step, inside the meter's step, with whether it
            was the epoch's last (``DataParallel.after_step``: local SGD's averaging).

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
    t0 = time.monotonic()
    train_loss = float("nan")
    val_loss = float("nan")
    every = max(1, config.epochs // 10)
    done = _resume(checkpoint, model, optimizer, epochs=config.epochs, report=report)
    # This world's steps per epoch: the schedule goes on at the same fraction of the run.
    step = done * len(batches)
    for epoch in range(done + 1, config.epochs + 1):
        set_epoch = getattr(order, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch - 1)
        model.train()
        started = time.perf_counter()
        running, seen = 0.0, 0
        for batch, indices in enumerate(batches, start=1):
            lr = _learning_rate(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = torch.as_tensor(indices)
            loss = chunk_loss(
                model(train.observations[index].to(device)),
                train.actions[index].to(device),
                train.mask[index].to(device),
            )
            with meter.step() if meter is not None else contextlib.nullcontext():
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                if after_step is not None:
                    after_step(batch == len(batches))
            running += float(loss.detach()) * len(indices)
            seen += len(indices)
            step += 1
        elapsed = time.perf_counter() - started
        running, seen, world = across_ranks(running, seen, device)
        train_loss = running / max(seen, 1)
        if not math.isfinite(train_loss):
            # Every later step would only carry the nan on; stop with the cause and the fix.
            msg = (
                f"training diverged: the loss is {train_loss} in epoch {epoch}: lower the learning rate "
                f"(--lr, now {config.lr:g}) or check the data's scale"
            )
            raise ConfigError(msg)
        model.eval()
        val_loss = _evaluate(unwrapped(model), val, 4096)
        if report is not None and meter is not None:
            line = epoch_line(
                epoch=epoch,
                epochs=config.epochs,
                steps=step,
                loss=train_loss,
                seen=seen,
                seconds=elapsed,
                world=world,
            )
            report(line)
            # Every rank measured it (no rank waits for another); the run report's time to a
            # target (`--target heldout_loss=...`) reads it from this line.
            report(heldout_line(epoch=epoch, epochs=config.epochs, metrics={"heldout_loss": val_loss}))
        if report is not None and (epoch % every == 0 or epoch == config.epochs):
            report(f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
        if checkpoint is not None:
            checkpoint.save(
                {"epoch": epoch, "model": unwrapped(model).state_dict(), "optimizer": optimizer.state_dict()}
            )
    return TrainResult(
        train_loss=train_loss,
        val_loss=val_loss,
        epochs=config.epochs,
        steps=step,
        seconds=time.monotonic() - t0,
    )
