"""The DDP comm hooks torch does not ship (or will not register here), written on
torch.distributed collectives: top-k sparsification (each rank sends its k largest coordinates),
a count sketch in the style of FetchSGD (each rank sends a small linear sketch; the k heaviest
coordinates of the sum are recovered), and torch's bf16 hook under a name DDP accepts on gloo.

This module has no ``from __future__ import annotations``: DDP compares a hook's annotations
with ``dist.GradBucket`` and ``torch.futures.Future[torch.Tensor]`` themselves, not with strings.

The two sparsifying hooks keep, per rank, what it has not yet had applied (the error
accumulator) and add it to the next step's gradient, so nothing is lost, only delayed (Stich et
al. 2018; Karimireddy et al. 2019). The accumulators are kept per parameter, not per bucket: DDP
rebuilds its buckets after the first step (new order), and a bucket-shaped accumulator would
then be added to the wrong coordinates. Both send a bucket's vectors (biases, normalization
scales: under 1 % of the coordinates here) whole, as torch's PowerSGD hook does, and sparsify
only the matrices (convolution and linear weights): Adam moves a coordinate by about the
learning rate whenever its gradient is non-zero, and the grasp model trained better with its
vectors updated every step (held-out accuracy 0.798 against 0.781 at topk:0.01, 240 steps).
"""

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

__all__ = ["ErrorAccumulators", "SketchState", "TopKState", "bf16_hook", "sketch_hook", "topk_hook"]


def bf16_hook(
    process_group: dist.ProcessGroup | None, bucket: GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """torch's ``default_hooks.bf16_compress_hook``, as it is. DDP refuses that hook by its name
    unless CUDA with NCCL 2.10+ is present (NCCL's bfloat16 support); gloo all-reduces bfloat16
    on the CPU too (test/train/test_comm_hooks.py trains with it), so it is registered under
    this name."""
    return default_hooks.bf16_compress_hook(process_group, bucket)  # type: ignore[arg-type]


class ErrorAccumulators:
    """Each parameter's error accumulator, laid out as a bucket's flat buffer on demand (DDP packs
    a bucket's gradients back to back in the order of ``bucket.parameters()``)."""

    def __init__(self) -> None:
        self._by_parameter: dict[int, torch.Tensor] = {}

    def pending(self, parameter: torch.Tensor) -> torch.Tensor | None:
        """What this rank has accumulated for ``parameter`` and not yet had applied (flat)."""
        return self._by_parameter.get(id(parameter))

    def gather(self, bucket: GradBucket) -> torch.Tensor:
        """The bucket's accumulators as one flat tensor (zeros where a parameter has none yet)."""
        buffer = bucket.buffer()
        parts = []
        for parameter in bucket.parameters():
            kept = self._by_parameter.get(id(parameter))
            parts.append(kept if kept is not None else buffer.new_zeros(parameter.numel()))
        flat = torch.cat(parts) if parts else buffer.new_zeros(0)
        if flat.numel() != buffer.numel():
            msg = f"bucket {bucket.index()} holds {buffer.numel()} values, its parameters {flat.numel()}"
            raise RuntimeError(msg)
        return flat

    def keep(self, bucket: GradBucket, flat: torch.Tensor) -> None:
        """Store ``flat`` (the bucket's layout) back per parameter."""
        offset = 0
        for parameter in bucket.parameters():
            size = parameter.numel()
            self._by_parameter[id(parameter)] = flat[offset : offset + size]
            offset += size


@dataclass(frozen=True)
class _Layout:
    """Where a bucket's vectors and matrices lie in its flat buffer."""

    vectors: torch.Tensor  # int64 coordinates of the vectors (sent whole)
    matrices: torch.Tensor  # int64 coordinates of the matrices (sparsified), in order


def _layout(bucket: GradBucket, cache: dict[tuple[int, ...], _Layout]) -> _Layout:
    parameters = bucket.parameters()
    key = (bucket.index(), *(id(p) for p in parameters))
    if key not in cache:
        device = bucket.buffer().device
        vectors: list[torch.Tensor] = []
        matrices: list[torch.Tensor] = []
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            (vectors if parameter.dim() <= 1 else matrices).append(torch.arange(offset, offset + size))
            offset += size
        none = torch.zeros(0, dtype=torch.long)
        cache[key] = _Layout(
            vectors=(torch.cat(vectors) if vectors else none).to(device),
            matrices=(torch.cat(matrices) if matrices else none).to(device),
        )
    return cache[key]


def _group(process_group: dist.ProcessGroup | None) -> dist.ProcessGroup:
    group = process_group if process_group is not None else dist.group.WORLD
    if group is None:
        msg = "a comm hook runs inside a process group: call init_process_group first"
        raise RuntimeError(msg)
    return group


def _kept(ratio: float, numel: int) -> int:
    return max(1, min(numel, math.ceil(ratio * numel)))


@dataclass
class TopKState:
    """State of :func:`topk_hook`.

    Attributes:
        ratio: the fraction of the matrices' coordinates each rank sends per step.
        process_group: the group to communicate on (None: the default group).
    """

    ratio: float
    process_group: dist.ProcessGroup | None = None
    residuals: ErrorAccumulators = field(default_factory=ErrorAccumulators)
    layouts: dict[tuple[int, ...], _Layout] = field(default_factory=dict)


def topk_hook(state: TopKState, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Top-k sparsification with error feedback.

    Each rank adds its residual to the bucket's gradient and keeps the ``k = ceil(ratio * n)`` of
    the matrices' n coordinates of largest magnitude, and every vector whole; the rest is its new
    residual. It sends the v vector values, the k chosen values and their int32 indices as one
    byte tensor by ``all_gather_single`` (``4 v + 8 k`` bytes for float32). Every rank then sums
    the W contributions (coordinates two ranks both chose add up) and divides by W: the same mean
    gradient on every rank. (Selecting per matrix instead of over all of them trained worse here.)
    """
    group = _group(state.process_group)
    world = group.size()
    gradient = bucket.buffer()
    layout = _layout(bucket, state.layouts)
    accumulated = gradient + state.residuals.gather(bucket)
    matrices = layout.matrices
    chosen = matrices[
        accumulated[matrices].abs().topk(_kept(state.ratio, matrices.numel()), sorted=False).indices
    ]
    whole, values = accumulated[layout.vectors], accumulated[chosen]
    accumulated[layout.vectors] = 0.0
    accumulated[chosen] = 0.0
    state.residuals.keep(bucket, accumulated)
    # Indices below 2**31: a bucket is at most a few GiB of float32.
    parts = (whole, values, chosen.to(torch.int32))
    sent = torch.cat([part.view(torch.uint8) for part in parts])
    received = sent.new_empty(world * sent.numel())
    work = dist.all_gather_single(received, sent, group=group, async_op=True)

    def decode(_done: torch.futures.Future[object]) -> torch.Tensor:
        rows = received.view(world, -1)
        ends = [0]
        for part in parts:
            ends.append(ends[-1] + part.numel() * part.element_size())
        whole_sum, gathered_values, gathered_indices = (
            rows[:, begin:end].contiguous().view(part.dtype)
            for begin, end, part in zip(ends[:-1], ends[1:], parts, strict=True)
        )
        gradient.zero_()
        gradient[layout.vectors] = whole_sum.sum(dim=0)
        gradient.index_add_(0, gathered_indices.reshape(-1).long(), gathered_values.reshape(-1))
        return gradient.div_(world)

    future: torch.futures.Future[torch.Tensor] = work.get_future().then(decode)
    return future


@dataclass
class SketchState:
    """State of :func:`sketch_hook`.

    Attributes:
        ratio: the fraction of the matrices' coordinates recovered per step; the sketch has about
            as many cells (``rows * ceil(k / rows)``).
        rows: independent hash rows (odd, so that the median is one of them).
        seed: the hash seed; the same on every rank, so that sketches add up.
        process_group: the group to communicate on (None: the default group).
    """

    ratio: float
    rows: int = 5
    seed: int = 0
    process_group: dist.ProcessGroup | None = None
    errors: ErrorAccumulators = field(default_factory=ErrorAccumulators)
    layouts: dict[tuple[int, ...], _Layout] = field(default_factory=dict)
    hashes: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def recovered(self, numel: int) -> int:
        """How many of ``numel`` coordinates a step recovers (k)."""
        return _kept(self.ratio, numel)

    def columns(self, numel: int) -> int:
        """The sketch's columns for ``numel`` coordinates."""
        return math.ceil(self.recovered(numel) / self.rows)

    def cells_and_signs(
        self, bucket_index: int, numel: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each coordinate's cell in every row (flat index into the rows x cols table) and its
        sign, drawn once per bucket from :attr:`seed` (identical on every rank)."""
        key = (bucket_index, numel)
        if key not in self.hashes:
            columns = self.columns(numel)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + bucket_index * 7_919 + numel)
            column = torch.randint(0, columns, (self.rows, numel), generator=generator)
            cells = column + torch.arange(self.rows).unsqueeze(1) * columns
            signs = torch.randint(0, 2, (self.rows, numel), generator=generator) * 2 - 1
            self.hashes[key] = (cells.to(device), signs.to(torch.int8).to(device))
        return self.hashes[key]


def sketch_hook(state: SketchState, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Count-sketch compression with error accumulation, after FetchSGD (Rothchild et al. 2020).

    Each rank adds its error accumulator to the bucket's gradient and sketches the matrices'
    coordinates of the sum into a ``rows x cols`` count sketch (coordinate j adds
    ``sign_r(j) * value`` to cell ``h_r(j)`` of every row r), ``rows * cols`` about ``k = ratio *
    n``. Sketches are linear, so one ``all_reduce`` of the table (the vectors ride along whole)
    sketches the sum over ranks. Every rank then estimates each coordinate of that sum as the
    median over rows of ``sign_r(j) * table[r, h_r(j)]`` and takes the k coordinates of largest
    estimate: the same table gives the same k on every rank. A second ``all_reduce`` of those k
    accumulated values gives their exact sum, whose mean is the step's k-sparse gradient; each
    rank then clears them from its accumulator and keeps the rest for later steps. Per step that
    is ``4 (cells + v + k)`` bytes for float32, about what top-k sends for the same ratio.

    Simplified from the paper: no momentum in sketch space, accumulators in gradient space (one
    per rank; their sum is the paper's sketched error), and the values come from the second round
    (which the paper offers as an option) rather than from the sketch's estimates: applying the
    estimates themselves, collision noise and all, fed that noise back through the accumulators
    and diverged here once k approached the sketch's width. The second round is launched from the
    first one's callback, as torch's PowerSGD hook does, so on gloo the model needs one bucket
    (see :func:`fogros_dist.train.comm_hooks.bucket_cap_mb`).
    """
    group = _group(state.process_group)
    world = group.size()
    gradient = bucket.buffer()
    layout = _layout(bucket, state.layouts)
    accumulated = gradient + state.errors.gather(bucket)
    coordinates = layout.matrices
    numel = coordinates.numel()
    cells, signs = state.cells_and_signs(bucket.index(), numel, gradient.device)
    cell_count = state.rows * state.columns(numel)
    table = gradient.new_zeros(cell_count + layout.vectors.numel())
    sketch, vectors = table[:cell_count], table[cell_count:]
    sketch.index_add_(0, cells.reshape(-1), (signs * accumulated[coordinates]).reshape(-1))
    vectors.copy_(accumulated[layout.vectors])
    work = dist.all_reduce(table, group=group, async_op=True)

    def recover(_done: torch.futures.Future[object]) -> torch.Tensor:
        estimate = (sketch[cells] * signs).median(dim=0).values
        chosen = coordinates[estimate.abs().topk(state.recovered(numel), sorted=False).indices]
        values = accumulated[chosen]
        dist.all_reduce(values, group=group, async_op=True).get_future().wait()
        accumulated[chosen] = 0.0
        accumulated[layout.vectors] = 0.0
        state.errors.keep(bucket, accumulated)
        gradient.zero_()
        gradient[chosen] = values
        gradient[layout.vectors] = vectors
        return gradient.div_(world)

    future: torch.futures.Future[torch.Tensor] = work.get_future().then(recover)
    return future
