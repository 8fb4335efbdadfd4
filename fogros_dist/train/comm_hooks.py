"""How DDP exchanges a run's gradients: ``--comm-hook HOOK[:PARAM]``, one choice per run.

Every choice is registered as a DDP comm hook (``DistributedDataParallel.register_comm_hook``),
so every one of them goes through torch.distributed's Python collectives, where
:mod:`fogros_dist.train.comm_meter` counts the bytes and times the calls. What each sends per
bucket of n float32 gradients, per rank and step:

* ``none``: torch's ``default_hooks.allreduce_hook``, the same mean DDP's built-in C++ all-reduce
  computes: one all-reduce of n float32 (4n bytes).
* ``fp16``, ``bf16``: torch's ``fp16_compress_hook`` / ``bf16_compress_hook``: the bucket cast to
  16 bits, all-reduced (2n bytes), cast back (bf16 on gloo: see
  :func:`fogros_dist.train.compression_hooks.bf16_hook`).
* ``powersgd[:RANK]`` (default rank 2): torch's ``powerSGD_hook`` (Vogels et al. 2019) with error
  feedback and warm start: each weight matrix m x n is sent as its rank-r factors P (m x r) and Q
  (n x r), two all-reduces; vectors (biases, norms) and matrices too small to gain go as one plain
  all-reduce. The first :data:`POWERSGD_START_STEP` steps are plain all-reduce (see there).
  On gloo, PowerSGD's chained all-reduces of several buckets may reach the ranks in different
  orders, so this hook gets the whole model in one DDP bucket (:func:`bucket_cap_mb`).
* ``topk[:RATIO]`` (default 0.1): :func:`fogros_dist.train.compression_hooks.topk_hook`: each
  rank's k = RATIO * m largest error-corrected coordinates of the m in weight matrices, values
  and int32 indices, by all-gather; vectors (biases, norms) whole. 8k + 4v bytes: about twice
  RATIO of ``none``'s.
* ``sketch[:RATIO]`` (default 0.1): :func:`fogros_dist.train.compression_hooks.sketch_hook`:
  a 5-row count sketch of the weight matrices' error-corrected gradients (about k = RATIO * m
  float32 cells) and the vectors, all-reduced; the k heaviest coordinates of the sum, recovered
  from it, have their exact values all-reduced next. About twice RATIO of ``none``'s bytes.
  Like PowerSGD, it starts its second all-reduce from the first one's callback: one bucket.
* ``localsgd[:PERIOD]`` (default 8): local SGD, torch's ``post_localSGD_hook``: after
  :data:`LOCALSGD_START_STEP` steps of plain all-reduce, no gradient is sent; the ranks average
  their parameters (4n bytes, one all-reduce) every PERIOD steps and at each epoch's end
  (:mod:`fogros_dist.train.local_sgd`): about 4n / PERIOD bytes a step.

Measured, not estimated: each run's metrics carry ``bytes_per_step`` (payload handed to
collectives, mean over the run's steps; DDP's per-forward broadcast of BatchNorm buffers
included), ``bytes_last_step`` (the steady state, after PowerSGD's plain start),
``comm_seconds_per_step`` and ``compute_seconds_per_step`` (time collectives were in flight, and
the rest of the step), and ``written_bytes_per_step`` (what the process wrote to its sockets,
from /proc/self/io); see :mod:`fogros_dist.train.comm_meter` for how.

What each hook costs and how it trains, over 50 and 200 Mbit/s links between 1, 2 and 3 hosts:
bench/train_scaling.py and its table in BENCHMARKS.md; test/train/test_comm_hooks.py checks the
bytes of every hook exactly and each hook's held-out accuracy against ``none``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fogros_dist.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from fogros_dist.train.local_sgd import LocalSGD

__all__ = [
    "HOOK_CHOICES",
    "LOCALSGD_START_STEP",
    "POWERSGD_START_STEP",
    "CommHook",
    "bucket_cap_mb",
    "local_sgd",
    "parse_comm_hook",
    "register_comm_hook",
]

HOOK_CHOICES = "none, fp16, bf16, powersgd[:RANK], topk[:RATIO], sketch[:RATIO], localsgd[:PERIOD]"
# Plain all-reduce for PowerSGD's first steps. Early gradients are the largest and turn fastest,
# where a low-rank approximation loses most (torch's docs suggest ~10 % of the run, and no fewer
# than the warm-up); the runs this tool makes are tens to hundreds of steps, so 10 is that 10 %
# for the longer ones while the run's mean bytes still fall far below all-reduce's. It must be
# at least 2 anyway: DDP rebuilds its buckets after step 1, which PowerSGD's memories must follow.
POWERSGD_START_STEP = 10
_DEFAULT_RANK = 2
# Local SGD's plain start, for the reason PowerSGD has one: the first, largest gradients are where
# ranks that step apart would drift most.
LOCALSGD_START_STEP = POWERSGD_START_STEP
# Steps between averages. Between 2 hosts on 50 Mbit/s (bench/train_scaling.py's grasp run, 80
# steps an epoch) periods of 4, 8 and 16 all ended within a point of all-reduce; a longer period
# lets the ranks drift further apart, the more so with a large learning rate, so the default is
# the middle one and the benchmark also measures 16.
_DEFAULT_PERIOD = 8
_MAX_PERIOD = 1000
# Both ratios are the fraction of the weights' coordinates a step updates. Adam (the workloads'
# optimizer) moves a coordinate by about the learning rate whenever its gradient is non-zero, so
# sparse updates slow it down, however large the error feedback makes them: in the 480-step grasp
# runs measured (see the module's doc) top-k at 0.1 stayed within a point of all-reduce, at 0.01
# it lost 2.2; the sketch, which picks its coordinates from a noisy estimate, lost 4-5 at 0.1.
_DEFAULT_RATIO = {"topk": 0.1, "sketch": 0.1}
_MAX_RANK = 64
# The hooks whose parameter is a whole number: its name, default and range.
_WHOLE_PARAMETER = {
    "powersgd": ("RANK", _DEFAULT_RANK, 1, _MAX_RANK),
    "localsgd": ("PERIOD", _DEFAULT_PERIOD, 2, _MAX_PERIOD),
}
# Hooks whose second collective starts in the first one's callback: with several buckets those
# reach gloo in a different order on each rank, so they get the whole model in one bucket.
_ONE_BUCKET = ("powersgd", "sketch")


@dataclass(frozen=True)
class CommHook:
    """One run's choice: a hook's name and its parameter (PowerSGD's rank, top-k's or the
    sketch's ratio; None for the hooks that take none)."""

    name: str = "none"
    param: float | None = None

    def __str__(self) -> str:
        if self.param is None:
            return self.name
        value = int(self.param) if self.name in _WHOLE_PARAMETER else self.param
        return f"{self.name}:{value:g}"

    def describe(self) -> str:
        """One phrase for the run's log."""
        match self.name:
            case "none":
                return "float32 all-reduce (DDP's default)"
            case "fp16" | "bf16":
                return f"{self.name} all-reduce"
            case "powersgd":
                rank = int(self.param or _DEFAULT_RANK)
                return f"PowerSGD rank {rank}, after {POWERSGD_START_STEP} steps of all-reduce"
            case "localsgd":
                period = int(self.param or _DEFAULT_PERIOD)
                return (
                    f"local SGD: parameters averaged every {period} steps and at each epoch's end, "
                    f"after {LOCALSGD_START_STEP} steps of all-reduce"
                )
            case "topk":
                return f"all-gather of the top {self.param:.3g} of the weights' coordinates, error feedback"
            case _:
                return f"count sketch recovering {self.param:.3g} of the weights' coordinates, error feedback"


def parse_comm_hook(text: str) -> CommHook:
    """``"none"``, ``"fp16"``, ``"bf16"``, ``"powersgd[:RANK]"``, ``"topk[:RATIO]"``,
    ``"sketch[:RATIO]"``, ``"localsgd[:PERIOD]"`` (case ignored).

    Raises:
        ConfigError: an unknown hook, a parameter to a hook that takes none, or a parameter out of
            range (RANK 1..64, RATIO in (0, 1), PERIOD 2..1000); one line that names it and the choices.
    """
    name, colon, raw = text.strip().lower().partition(":")
    if name in ("none", "fp16", "bf16"):
        if colon:
            msg = f"--comm-hook {text!r}: {name} takes no parameter: use {name} (choices: {HOOK_CHOICES})"
            raise ConfigError(msg)
        return CommHook(name)
    if name in _WHOLE_PARAMETER:
        what, default, low, high = _WHOLE_PARAMETER[name]
        value = default if not colon else _number(text, raw, int, f"{what}, a whole number")
        if not low <= value <= high:
            msg = f"--comm-hook {text!r}: {what} must be a whole number {low}..{high}, e.g. {name}:{default}"
            raise ConfigError(msg)
        return CommHook(name, float(value))
    if name in _DEFAULT_RATIO:
        ratio = _DEFAULT_RATIO[name] if not colon else _number(text, raw, float, "RATIO, a number in (0, 1)")
        if not (0.0 < ratio < 1.0 and math.isfinite(ratio)):
            msg = (
                f"--comm-hook {text!r}: RATIO must be a number in (0, 1), e.g. {name}:{_DEFAULT_RATIO[name]}"
            )
            raise ConfigError(msg)
        return CommHook(name, ratio)
    msg = f"--comm-hook {text!r} is not a gradient communication hook: use one of {HOOK_CHOICES}"
    raise ConfigError(msg)


def _number(text: str, raw: str, kind: type[int] | type[float], what: str) -> float:
    try:
        return kind(raw)
    except ValueError:
        msg = f"--comm-hook {text!r}: {raw!r} is not a {what} (choices: {HOOK_CHOICES})"
        raise ConfigError(msg) from None


def bucket_cap_mb(hook: CommHook, model: nn.Module) -> int | None:
    """DDP's ``bucket_cap_mb`` for ``hook``: room for every gradient of ``model`` in one bucket
    for the hooks that launch a collective from another's callback (PowerSGD, the sketch: see
    the module's doc); DDP's default otherwise (None)."""
    if hook.name not in _ONE_BUCKET:
        return None
    total = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return max(1, math.ceil(total / 2**20) + 1)


def local_sgd(model: DistributedDataParallel, hook: CommHook) -> LocalSGD | None:
    """The parameter averaging that goes with ``localsgd``'s comm hook; None for other hooks."""
    if hook.name != "localsgd":
        return None
    from fogros_dist.train.local_sgd import LocalSGD

    return LocalSGD(model, period=int(hook.param or _DEFAULT_PERIOD), start_steps=LOCALSGD_START_STEP)


def register_comm_hook(model: DistributedDataParallel, hook: CommHook) -> object:
    """Register ``hook`` on ``model`` (before its first forward), on the default process group.

    Returns:
        The hook's state (PowerSGD's, top-k's or the sketch's, with their error accumulators),
        None for the hooks that keep none.
    """
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, post_localSGD_hook, powerSGD_hook

    from fogros_dist.train import compression_hooks as own

    match hook.name:
        case "none":
            model.register_comm_hook(None, default_hooks.allreduce_hook)
            return None
        case "fp16":
            model.register_comm_hook(None, default_hooks.fp16_compress_hook)
            return None
        case "bf16":
            # torch's own hook where DDP accepts it; on gloo the same hook under another name.
            cuda = next(model.parameters()).device.type == "cuda"
            model.register_comm_hook(None, default_hooks.bf16_compress_hook if cuda else own.bf16_hook)
            return None
        case "powersgd":
            state = powerSGD_hook.PowerSGDState(
                process_group=None,
                matrix_approximation_rank=int(hook.param or _DEFAULT_RANK),
                start_powerSGD_iter=POWERSGD_START_STEP,
                # A column of zeros (a dead ReLU's weights) would otherwise divide by zero.
                orthogonalization_epsilon=1e-8,
            )
            model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
            return state
        case "localsgd":
            local = post_localSGD_hook.PostLocalSGDState(  # type: ignore[no-untyped-call]
                process_group=None,
                subgroup=None,
                start_localSGD_iter=LOCALSGD_START_STEP,
                # No gradient all-reduce after the start: the parameter averages are the exchange.
                post_local_gradient_allreduce=False,
            )
            model.register_comm_hook(local, post_localSGD_hook.post_localSGD_hook)
            return local
        case "topk":
            topk = own.TopKState(ratio=float(hook.param or 0))
            model.register_comm_hook(topk, own.topk_hook)
            return topk
        case "sketch":
            sketch = own.SketchState(ratio=float(hook.param or 0))
            model.register_comm_hook(sketch, own.sketch_hook)
            return sketch
        case _:
            raise ConfigError(f"--comm-hook {hook.name!r}: use one of {HOOK_CHOICES}")
