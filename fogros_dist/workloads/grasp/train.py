"""Train and evaluate the grasp-quality network; the pipeline behind `fogros-dist train grasp`.

:func:`train_model` is the bare loop (a model, a :class:`GraspDataset`, an index sampler: pass a
``DistributedSampler`` and a DDP-wrapped model to train data-parallel). :func:`run_training`
generates the data, trains, evaluates on held-out scenes (classification against the analytic
labels, and the full planner: time per image, robustness of its best grasps) and saves the model.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fogros_dist.train.checkpoint import Checkpointer
from fogros_dist.train.context import DistContext, join_run
from fogros_dist.train.epoch_loop import across_ranks, epoch_line, heldout_line, sync_ranks, unwrapped
from fogros_dist.workloads.device import resolve_device
from fogros_dist.workloads.grasp.dataset import (
    TEST_SPLIT,
    TRAIN_SPLIT,
    DatasetConfig,
    GraspDataset,
    GraspSamples,
    generate_samples,
    split_scenes,
)
from fogros_dist.workloads.grasp.labels import robust_labels
from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig, save_model
from fogros_dist.workloads.grasp.plan import CemConfig, GraspPlanner
from fogros_dist.workloads.grasp.scene import render_depth

if TYPE_CHECKING:
    from fogros_dist.train.comm_hooks import CommHook
    from fogros_dist.train.comm_meter import CommMeter

__all__ = [
    "GraspTraining",
    "TrainConfig",
    "classifier_metrics",
    "planner_metrics",
    "run_training",
    "train_model",
]

Report = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimization settings.

    Attributes:
        epochs: passes over the data.
        batch_size: samples per step.
        learning_rate: peak learning rate of the one-cycle schedule (Adam).
        weight_decay: L2 penalty.
        seed: seeds initialization order, shuffling and augmentation.
    """

    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def train_model(
    model: nn.Module,
    dataset: GraspDataset,
    *,
    config: TrainConfig,
    sampler: Iterable[int] | None = None,
    report: Report | None = None,
    checkpoint: Checkpointer | None = None,
    meter: CommMeter | None = None,
    after_step: Callable[[bool], None] | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int = 0,
) -> list[float]:
    """Train ``model`` (a :class:`GQCNN`, or one wrapped by DDP) on ``dataset`` in place.

    Args:
        model: the network; called as ``model(patches, depths)`` -> logits.
        dataset: the training samples.
        config: optimization settings.
        sampler: yields sample indices for one epoch (default: a seeded shuffle of all); a
            sampler with ``set_epoch`` (``DistributedSampler``) is told the epoch first.
        report: one line per epoch.
        checkpoint: where the run's state is saved after every epoch and, when torchrun restarted
            the workers (a machine left or joined), resumed from: the model, the optimizer, the
            epochs done, the schedule's position as a fraction of the run (so a new world size,
            with its own steps per epoch, goes on where the old one was).
        meter: counts each optimizer step's gradient communication (the DDP model's, from
            :func:`fogros_dist.train.data_parallel.data_parallel`).
        after_step: called after each optimizer step, inside the meter's step, with whether it
            was the epoch's last (``DataParallel.after_step``: local SGD's averaging).
        evaluate: held-out metrics of the bare network (``heldout_accuracy``: ...), reported as
            an ``eval:`` line after every ``eval_every``-th epoch and the last; rank 0's only.
        eval_every: epochs between evaluations (0: none in the loop). Every rank must be given
            the same value: the others wait at a barrier while rank 0 evaluates, so that no
            rank's step time (nor the comm meter) counts the evaluation.

    Returns:
        The mean training loss of each epoch.

    Raises:
        ValueError: the dataset is empty.
    """
    if len(dataset) == 0:
        msg = "the grasp dataset is empty: generate more scenes (--scenes)"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(config.seed)
    if sampler is None:
        sampler = torch.utils.data.RandomSampler(range(len(dataset)), generator=generator)
    # The schedule counts this rank's optimizer steps: under a DistributedSampler each rank sees
    # 1/world of the data per epoch, so the dataset's length would stretch it world-fold.
    per_epoch = len(sampler) if isinstance(sampler, Sized) else len(dataset)
    steps_per_epoch = max(1, math.ceil(per_epoch / config.batch_size))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=max(1, config.epochs * steps_per_epoch) + 1
    )
    loss_fn = nn.BCEWithLogitsLoss()
    device = next(model.parameters()).device
    losses: list[float] = []
    first_epoch = 0
    state = checkpoint.restore() if checkpoint is not None else None
    if state is not None:
        first_epoch, losses = _resume(state, model, optimizer, schedule, steps_per_epoch)
        if report is not None:
            report(f"train: resumed after epoch {first_epoch}/{config.epochs} from the run's checkpoint")
    model.train()
    for epoch in range(first_epoch, config.epochs):
        set_epoch = getattr(sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        started = time.perf_counter()
        order = torch.as_tensor(list(sampler), dtype=torch.long)
        total, seen = 0.0, 0
        for first in range(0, order.shape[0], config.batch_size):
            patches, depths, labels = (
                t.to(device) for t in dataset.batch(order[first : first + config.batch_size])
            )
            with meter.step() if meter is not None else contextlib.nullcontext():
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(patches, depths), labels)
                loss.backward()
                optimizer.step()
                if after_step is not None:
                    after_step(first + config.batch_size >= order.shape[0])
            schedule.step()
            total += float(loss.detach()) * labels.shape[0]
            seen += labels.shape[0]
        total, seen, world = across_ranks(total, seen, device)
        losses.append(total / max(1, seen))
        steps = (epoch + 1) * steps_per_epoch
        if report is not None:
            elapsed = time.perf_counter() - started
            report(
                epoch_line(
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    steps=steps,
                    loss=losses[-1],
                    seen=seen,
                    seconds=elapsed,
                    world=world,
                )
            )
        if checkpoint is not None:
            checkpoint.save(
                {
                    "epoch": epoch + 1,
                    "model": unwrapped(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "losses": losses,
                }
            )
        if eval_every > 0 and ((epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs):
            _evaluate_epoch(model, epoch=epoch + 1, epochs=config.epochs, evaluate=evaluate, report=report)
    model.eval()
    return losses


def _evaluate_epoch(
    model: nn.Module,
    *,
    epoch: int,
    epochs: int,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None,
    report: Callable[[str], None] | None,
) -> None:
    """Rank 0 reports the held-out metrics after ``epoch``; every rank waits for it."""
    if evaluate is not None and report is not None:
        report(heldout_line(epoch=epoch, epochs=epochs, metrics=evaluate(unwrapped(model))))
    sync_ranks()
    model.train()  # whatever mode evaluate left it in


def _resume(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    steps_per_epoch: int,
) -> tuple[int, list[float]]:
    """Load a checkpoint into the model and optimizer and move the schedule to its epoch."""
    unwrapped(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    epochs_done = int(state["epoch"])
    with warnings.catch_warnings():
        # Stepping the schedule alone is the point here: it only replays its position.
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs_done * steps_per_epoch):
            schedule.step()
    return epochs_done, [float(x) for x in state["losses"]]


def _held_out_metrics(samples: GraspSamples) -> Callable[[nn.Module], Mapping[str, float]]:
    """The in-training evaluation: ``heldout_accuracy``, ``heldout_precision``, ``heldout_recall``."""

    def evaluate(model: nn.Module) -> Mapping[str, float]:
        assert isinstance(model, GQCNN)
        found = classifier_metrics(model, samples)
        return {f"heldout_{k}": found[k] for k in ("accuracy", "precision", "recall")}

    return evaluate


def classifier_metrics(model: GQCNN, samples: GraspSamples, *, threshold: float = 0.5) -> dict[str, float]:
    """How well the network's ``P(robust) >= threshold`` matches the analytic labels.

    Returns:
        ``accuracy``, ``precision`` and ``recall`` (of the robust class), ``positive_rate`` (of the
        labels), ``samples``.
    """
    if len(samples) == 0:
        return {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "positive_rate": 0.0, "samples": 0.0}
    device = next(model.parameters()).device
    patches, depths = (
        torch.from_numpy(samples.patches).to(device),
        torch.from_numpy(samples.depths).to(device),
    )
    q = model.quality(patches, depths).cpu().numpy()
    predicted = q >= threshold
    truth = samples.labels
    hits = float((predicted & truth).sum())
    return {
        "accuracy": float((predicted == truth).mean()),
        "precision": hits / max(1.0, float(predicted.sum())),
        "recall": hits / max(1.0, float(truth.sum())),
        "positive_rate": float(truth.mean()),
        "samples": float(len(samples)),
    }


def planner_metrics(
    planner: GraspPlanner, data: DatasetConfig, *, report: Report | None = None
) -> dict[str, float]:
    """Plan on every scene of ``data`` and judge the plans by the analytic labels.

    Returns:
        ``plan_ms_median`` / ``plan_ms_mean`` (wall time per image), ``top1_robust`` (fraction of
        images whose best grasp is robust), ``topk_robust`` (fraction of all returned grasps that
        are robust), ``confidence`` (mean predicted quality of the best grasps), ``no_grasp``
        (fraction of images without any grasp).
    """
    times: list[float] = []
    top1: list[bool] = []
    topk: list[bool] = []
    confidence: list[float] = []
    empty = 0
    gripper = planner.model.config.gripper
    for scene in split_scenes(data):
        image = render_depth(scene, noise=data.noise, seed=scene.seed)
        result = planner.plan(image.depth, camera=scene.camera)
        times.append(result.seconds * 1000.0)
        if len(result.grasps) == 0:
            empty += 1
            top1.append(False)
            continue
        robust = robust_labels(scene, result.grasps, gripper=gripper, config=data.labels, seed=scene.seed)
        top1.append(bool(robust[0]))
        topk.extend(bool(r) for r in robust)
        confidence.append(float(result.qualities[0]))
    count = max(1, len(times))
    metrics = {
        "plan_ms_median": statistics.median(times) if times else 0.0,
        "plan_ms_mean": sum(times) / count,
        "top1_robust": sum(top1) / count,
        "topk_robust": sum(topk) / max(1, len(topk)),
        "confidence": sum(confidence) / max(1, len(confidence)),
        "no_grasp": empty / count,
    }
    if report is not None:
        report(
            f"plan: {len(times)} held-out images, {metrics['plan_ms_median']:.1f} ms median per image, "
            f"best grasp robust in {metrics['top1_robust']:.0%}"
        )
    return metrics


@dataclass(frozen=True, kw_only=True)
class GraspTraining:
    """One full training run: data, optimization, evaluation, output.

    Attributes:
        data: the training data (its held-out twin uses the same settings on another split).
        eval_scenes: held-out scenes for the classification metrics.
        eval_every: epochs between held-out evaluations during training (the run report's time
            to a target accuracy comes from them); 0: only the final evaluation.
        plan_images: held-out scenes the full planner is timed and judged on.
        optim: optimization settings.
        model: network shape.
        cem: planner settings for the evaluation.
        out: where to save the model (None: do not save).
        threads: torch CPU threads (0: torch's default).
    """

    data: DatasetConfig = field(default_factory=DatasetConfig)
    eval_scenes: int = 100
    eval_every: int = 1
    plan_images: int = 20
    optim: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cem: CemConfig = field(default_factory=CemConfig)
    out: Path | None = None
    threads: int = 0
    # "auto": the GPU where torch sees one, else the CPU (see workloads/device.py).
    device: str = "auto"


def run_training(
    settings: GraspTraining,
    *,
    report: Report,
    context: DistContext | None = None,
    keep_global_batch: bool = False,
    comm_hook: CommHook | None = None,
) -> tuple[GQCNN, dict[str, float]]:
    """Generate data, train, evaluate on held-out scenes and save.

    Args:
        settings: the run.
        report: progress lines.
        context: this worker's place in a data-parallel run (None: one process). Every rank
            generates the same data from the same seed and trains on its DistributedSampler
            shard of it (DDP averages the gradients); only rank 0 evaluates and saves, and the
            other ranks return empty metrics.
        keep_global_batch: under data parallelism, split ``settings.optim.batch_size`` across
            the ranks instead of scaling the learning rate (see :mod:`fogros_dist.train.scaling`).
        comm_hook: under data parallelism, how DDP exchanges the gradients (default: plain
            all-reduce); see :mod:`fogros_dist.train.comm_hooks`.

    Returns:
        The trained model and its metrics: ``heldout_accuracy``, ``heldout_precision``,
        ``heldout_recall``, ``heldout_positive_rate``, ``train_accuracy``, ``plan_ms_median``,
        ``plan_ms_mean``, ``top1_robust``, ``topk_robust``, ``confidence``, ``no_grasp``,
        sample counts and timings; under data parallelism also the gradient communication per
        step, the mean over the ranks (``bytes_per_step``, ``comm_seconds_per_step``, ...: see
        :mod:`fogros_dist.train.comm_meter`).
    """
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.optim.seed)
    started = time.perf_counter()
    data = replace(
        settings.data, split=TRAIN_SPLIT, gripper=settings.model.gripper, patch=settings.model.patch
    )
    held_out = replace(data, split=TEST_SPLIT, scenes=settings.eval_scenes, first_scene=0)
    report(f"data: generating {data.scenes} training and {held_out.scenes} held-out scenes")
    train_samples = generate_samples(data, report=report)
    test_samples = generate_samples(held_out)
    data_seconds = time.perf_counter() - started
    report(
        f"data: {len(train_samples)} training grasps ({train_samples.labels.mean():.0%} robust), "
        f"{len(test_samples)} held-out, in {data_seconds:.1f} s"
    )
    context = context or DistContext()
    device = join_run(context, resolve_device(settings.device), report)
    model = GQCNN(settings.model).to(device)
    train_started = time.perf_counter()
    dataset = GraspDataset(train_samples, augment=True, seed=settings.optim.seed)
    optim = settings.optim
    sampler: Iterable[int] | None = None
    trained: nn.Module = model
    meter: CommMeter | None = None
    after_step: Callable[[bool], None] | None = None
    if context.distributed:
        from fogros_dist.train.data_parallel import data_parallel

        parallel = data_parallel(
            model,
            dataset,
            context=context,
            device=device,
            batch_size=optim.batch_size,
            learning_rate=optim.learning_rate,
            seed=optim.seed,
            keep_global_batch=keep_global_batch,
            comm_hook=comm_hook,
        )
        optim = replace(
            optim, batch_size=parallel.plan.per_rank_batch, learning_rate=parallel.plan.learning_rate
        )
        sampler, trained, meter = parallel.sampler, parallel.model, parallel.meter
        after_step = parallel.after_step
        report(f"train: {parallel.describe(context, len(dataset))}")
    losses = train_model(
        trained,
        dataset,
        config=optim,
        sampler=sampler,
        report=report if context.is_main else None,
        # A fleet run's round may shrink to one rank (the others' machines died): it resumes too.
        checkpoint=Checkpointer.from_env(context),
        meter=meter,
        after_step=after_step,
        evaluate=_held_out_metrics(test_samples) if context.is_main else None,
        eval_every=settings.eval_every,
    )
    # Every rank takes part: the per-step figures are averaged over the ranks.
    communication = meter.summary_across_ranks(device).as_metrics() if meter is not None else {}
    # Evaluation, planning and the saved file are on the CPU, where the node serves by default.
    model = model.to("cpu")
    train_seconds = time.perf_counter() - train_started
    if not context.is_main:
        report(f"train: done in {train_seconds:.1f} s (rank 0 evaluates and saves)")
        return model, {}
    held = classifier_metrics(model, test_samples)
    seen = classifier_metrics(model, train_samples)
    report(
        f"eval: held-out accuracy {held['accuracy']:.3f}, precision {held['precision']:.3f}, "
        f"recall {held['recall']:.3f} ({held['samples']:.0f} grasps, {held['positive_rate']:.0%} robust)"
    )
    metrics: dict[str, float] = {
        "world_size": float(context.world_size),
        "heldout_accuracy": held["accuracy"],
        "heldout_precision": held["precision"],
        "heldout_recall": held["recall"],
        "heldout_positive_rate": held["positive_rate"],
        "heldout_samples": held["samples"],
        "train_accuracy": seen["accuracy"],
        "train_samples": float(len(train_samples)),
        "final_loss": losses[-1] if losses else float("nan"),
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        **communication,
    }
    if settings.plan_images > 0:
        planner = GraspPlanner(model, cem=settings.cem, seed=settings.optim.seed)
        plan_data = replace(held_out, scenes=settings.plan_images)
        metrics.update(planner_metrics(planner, plan_data, report=report))
    if settings.out is not None:
        save_model(model, settings.out, metrics=metrics)
        report(f"saved {settings.out}")
    metrics["total_seconds"] = time.perf_counter() - started
    return model, metrics
