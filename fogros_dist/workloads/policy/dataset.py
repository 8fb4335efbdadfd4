"""Demonstration bags -> (observation, action chunk) training samples.

A :class:`BagMapping` says which topic and which message fields make up the observation and the
action. :func:`read_episode` reads one bag with ``rosbags``, resamples every mapped topic onto one
fixed-rate time grid, and returns an :class:`Episode`; :func:`split_episodes` splits whole
episodes into train and validation sets (never samples of one episode into both);
:class:`Normalizer` holds the per-dimension statistics that travel with the model; and
:class:`ChunkDataset` serves each observation with the next ``chunk`` actions, padded and masked
at the end of an episode.

Resampling. The grid starts at the first sample of the latest-starting topic and runs at
``rate_hz`` until the first observation topic (the clock: the robot's state stream) or the action
topic ends. Every topic is read at grid time ``t`` as the last sample stamped no later than
``t + tolerance`` (zero-order hold), or linearly interpolated at ``t`` (``resample="linear"``, for
smooth signals). The tolerance absorbs stamp jitter: a sample stamped a millisecond after its
nominal time still lands on its own grid step instead of the next one. Unless set, it is half the
smaller of the grid period and the topic's median sample interval, so it never reaches the next
sample when a faster recording is downsampled.
Actions are always held, never interpolated: a command between two sent commands was never sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.bags import find_bags, one_line, open_bag
from fogros_dist.workloads.policy.fieldpaths import parse_field_path
from fogros_dist.workloads.policy.messages import (
    CMD_TOPIC,
    GOAL,
    GOAL_TOPIC,
    JOINT_STATE,
    STATE_TOPIC,
    TWIST_STAMPED,
    stamp_ns,
)

__all__ = [
    "DEFAULT_MAPPING",
    "BagMapping",
    "ChunkDataset",
    "Episode",
    "Normalizer",
    "Resample",
    "TimeSource",
    "TopicFields",
    "find_bags",
    "read_episode",
    "read_episodes",
    "resample",
    "split_episodes",
]

Resample = Literal["zoh", "linear"]
TimeSource = Literal["header", "log"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_NS = 1_000_000_000
# A constant dimension (every goal at the same x, say) has std 0; this floor keeps normalised
# values finite without inflating tiny but real variation.
_STD_FLOOR = 1e-3


@dataclass(frozen=True, kw_only=True)
class TopicFields:
    """Numbers taken from one topic: its message type and a dotted path per number.

    Attributes:
        topic: the topic name, ``/joint_states``.
        type: its message type, ``sensor_msgs/msg/JointState``.
        fields: one path per number, ``pose.position.x`` or ``position[1]``.
        resample: how the topic is read between samples: ``zoh`` (hold) or ``linear``.
    """

    topic: str
    type: str
    fields: tuple[str, ...]
    resample: Resample = "zoh"

    def __post_init__(self) -> None:
        if not self.fields:
            msg = f"topic {self.topic} maps no fields: name at least one, e.g. 'pose.position.x'"
            raise ConfigError(msg)
        if self.resample not in ("zoh", "linear"):
            msg = f"resample {self.resample!r} for {self.topic} is invalid: use 'zoh' or 'linear'"
            raise ConfigError(msg)
        for path in self.fields:
            parse_field_path(path)

    def extract(self, msg: Any) -> FloatArray:
        """The mapped numbers of one message, in ``fields`` order.

        Raises:
            ValueError: a field is missing, an array is too short (the message names its
                length), or a value is not a number. NaN and infinity are returned as they are.
        """
        values = np.empty(len(self.fields))
        for i, path in enumerate(self.fields):
            value: Any = msg
            for name, index in parse_field_path(path):
                if not hasattr(value, name):
                    text = f"{self.type} on {self.topic} has no field {name!r} (path {path!r})"
                    raise ValueError(text)
                value = getattr(value, name)
                if index is not None:
                    length = len(value)
                    if index >= length:
                        text = (
                            f"{name} on {self.topic} has {length} values, {path} needs at least {index + 1}"
                        )
                        raise ValueError(text)
                    value = value[index]
            try:
                values[i] = float(value)
            except (TypeError, ValueError) as err:
                text = f"{path} on {self.topic} is {value!r}, not a number"
                raise ValueError(text) from err
        return values


@dataclass(frozen=True, kw_only=True)
class BagMapping:
    """Which topics and fields make up the observation and the action.

    Attributes:
        observation: topics concatenated in order into the observation vector; the first one is
            the clock (the state stream each action answers); the others are held between samples.
        action: the command topic; its fields are the action vector.
        rate_hz: the fixed rate episodes are resampled to, and the policy acts at.
        time_source: ``header`` (the messages' header stamps: when the robot measured) or
            ``log`` (when the recorder received them; for types without a header).
        tolerance_s: how late a sample may be stamped and still count for a grid step; if None,
            half the smaller of the grid period and each topic's median sample interval.
    """

    observation: tuple[TopicFields, ...]
    action: TopicFields
    rate_hz: float = 10.0
    time_source: TimeSource = "header"
    tolerance_s: float | None = None

    def __post_init__(self) -> None:
        if not self.observation:
            msg = "the mapping has no observation topics: map at least one"
            raise ConfigError(msg)
        if self.rate_hz <= 0:
            msg = f"rate_hz ({self.rate_hz}) must be positive: use the control rate, e.g. 10.0"
            raise ConfigError(msg)
        if self.time_source not in ("header", "log"):
            msg = f"time_source {self.time_source!r} is invalid: use 'header' or 'log'"
            raise ConfigError(msg)
        if self.action.resample != "zoh":
            msg = (
                f"action topic {self.action.topic} has resample={self.action.resample!r}: actions are "
                "held between commands, use 'zoh'"
            )
            raise ConfigError(msg)
        names = [t.topic for t in (*self.observation, self.action)]
        if len(set(names)) != len(names):
            msg = f"a topic is mapped twice ({', '.join(names)}): map each topic once"
            raise ConfigError(msg)

    @property
    def observation_dim(self) -> int:
        """Length of the observation vector."""
        return sum(len(t.fields) for t in self.observation)

    @property
    def action_dim(self) -> int:
        """Length of the action vector."""
        return len(self.action.fields)

    def tolerance_ns(self, times: IntArray) -> int:
        """The jitter tolerance, ns, for a topic sampled at ``times`` (see ``tolerance_s``)."""
        if self.tolerance_s is not None:
            return round(self.tolerance_s * _NS)
        period = _NS / self.rate_hz
        if times.shape[0] >= 2:
            period = min(period, float(np.median(np.diff(times))))
        return round(0.5 * period)


DEFAULT_MAPPING = BagMapping(
    observation=(
        TopicFields(
            topic=STATE_TOPIC,
            type=JOINT_STATE,
            fields=("position[0]", "position[1]", "velocity[0]", "velocity[1]"),
        ),
        TopicFields(topic=GOAL_TOPIC, type=GOAL, fields=("pose.position.x", "pose.position.y")),
    ),
    action=TopicFields(topic=CMD_TOPIC, type=TWIST_STAMPED, fields=("twist.linear.x", "twist.linear.y")),
)


@dataclass(frozen=True, kw_only=True, eq=False)
class Episode:
    """One bag resampled to the mapping's rate.

    Attributes:
        bag: where it was read from.
        times: ``(T,)`` grid times, ns.
        observations: ``(T, observation_dim)``.
        actions: ``(T, action_dim)``; row ``k`` is the command in effect at ``times[k]``.
    """

    bag: Path
    times: IntArray
    observations: FloatArray
    actions: FloatArray

    def __len__(self) -> int:
        return int(self.times.shape[0])


def resample(
    times: IntArray, values: FloatArray, grid: IntArray, *, method: Resample, tolerance_ns: int = 0
) -> FloatArray:
    """Read a sampled signal at ``grid`` times.

    Args:
        times: ``(N,)`` sample times, ns, ascending.
        values: ``(N, D)`` samples.
        grid: ``(M,)`` query times, ns, none earlier than ``times[0] - tolerance_ns``.
        method: ``zoh``: the last sample at or before ``t + tolerance_ns``; ``linear``: linear
            interpolation at ``t``, holding the first/last sample outside the samples' span.
        tolerance_ns: how late a sample may be and still count (``zoh`` only).

    Returns:
        ``(M, D)`` values.

    Raises:
        ValueError: no samples, mismatched shapes, or a grid time before the first sample.
    """
    if times.ndim != 1 or values.ndim != 2 or times.shape[0] != values.shape[0] or times.shape[0] == 0:
        msg = f"need (N,) times and (N, D) values with N >= 1, got {times.shape} and {values.shape}"
        raise ValueError(msg)
    if method == "zoh":
        index = np.searchsorted(times, grid + tolerance_ns, side="right") - 1
        if grid.size and index.min() < 0:
            msg = f"grid time {int(grid.min())} ns is before the first sample at {int(times[0])} ns"
            raise ValueError(msg)
        held: FloatArray = values[index]
        return held
    # Interpolate in seconds relative to the first sample: ns since 1970 lose precision as float64.
    t = (times - times[0]).astype(np.float64) / _NS
    g = (grid - times[0]).astype(np.float64) / _NS
    return np.stack([np.interp(g, t, values[:, d]) for d in range(values.shape[1])], axis=1)


def _describe_time(stamp: int, bag_start: int, source: TimeSource) -> str:
    what = "header stamp" if source == "header" else "receive time"
    return f"{what} {stamp / _NS:.6f} s ({(stamp - bag_start) / _NS:.3f} s into the bag)"


def _check_finite(bag: Path, fields: TopicFields, values: FloatArray, when: str) -> None:
    """Refuse a NaN or infinity before training: one would turn every loss into nan."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        path = fields.fields[int(bad[0])]
        msg = (
            f"bag {bag}: {fields.topic} {path} is {values[bad[0]]} at {when}: "
            f"repair or drop that message (or the bag), or leave {path} out of the mapping"
        )
        raise ConfigError(msg)


def _read_topics(
    bag: Path, mapping: BagMapping, types: MessageTypes
) -> dict[str, tuple[IntArray, FloatArray]]:
    wanted = {t.topic: t for t in (*mapping.observation, mapping.action)}
    samples: dict[str, tuple[list[int], list[FloatArray]]] = {name: ([], []) for name in wanted}
    with open_bag(bag) as reader:
        present = {c.topic: c.msgtype for c in reader.connections}
        for name, fields in wanted.items():
            role = "action" if fields is mapping.action else "observation"
            if name not in present:
                msg = (
                    f"bag {bag} has no topic {name} (mapped to the {role}): it records "
                    f"{', '.join(sorted(present)) or 'nothing'}; record {name} or change the mapping"
                )
                raise ConfigError(msg)
            if present[name] != fields.type:
                msg = (
                    f"bag {bag} records {name} as {present[name]}, the mapping expects {fields.type}: "
                    "fix the mapping's type"
                )
                raise ConfigError(msg)
        connections = [c for c in reader.connections if c.topic in wanted]
        bag_start = int(reader.start_time)
        try:
            for connection, log_time, raw in reader.messages(connections=connections):
                fields = wanted[connection.topic]
                msg_obj = types.deserialize(fields.type, raw)
                if mapping.time_source == "header":
                    if not hasattr(msg_obj, "header"):
                        msg = (
                            f"bag {bag}: {fields.type} on {fields.topic} has no header stamp: "
                            'use the receive time (--time receive; time = "receive" in a mapping file)'
                        )
                        raise ConfigError(msg)
                    stamp = stamp_ns(msg_obj.header)
                else:
                    stamp = int(log_time)
                try:
                    values = fields.extract(msg_obj)
                except ValueError as err:
                    msg = f"bag {bag}: {err}: fix the mapping's field paths"
                    raise ConfigError(msg) from err
                _check_finite(bag, fields, values, _describe_time(stamp, bag_start, mapping.time_source))
                samples[connection.topic][0].append(stamp)
                samples[connection.topic][1].append(values)
        except ConfigError:
            raise
        except Exception as err:  # rosbags raises its own error types for damaged storage
            reason = one_line(f"{type(err).__name__}: {err}")
            msg = f"cannot read bag {bag} ({reason}): check that it is a complete rosbag2 bag"
            raise ConfigError(msg) from err
    out: dict[str, tuple[IntArray, FloatArray]] = {}
    for name, (stamps, rows) in samples.items():
        if not stamps:
            role = "action" if name == mapping.action.topic else "observation"
            msg = (
                f"bag {bag} has no messages on {name} (mapped to the {role}): "
                f"record {name} or change the mapping"
            )
            raise ConfigError(msg)
        order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
        out[name] = (np.asarray(stamps, dtype=np.int64)[order], np.asarray(rows)[order])
    return out


def read_episode(bag: Path, *, mapping: BagMapping = DEFAULT_MAPPING, distro: str = "jazzy") -> Episode:
    """Read one bag and resample it onto the mapping's fixed-rate grid.

    Args:
        bag: a rosbag2 bag (directory), mcap or sqlite3 storage.
        mapping: which topics and fields to read.
        distro: ROS 2 distribution of the message definitions.

    Returns:
        The resampled episode.

    Raises:
        ConfigError: the bag lacks a mapped topic (the message names the bag and the topic), has
            it with another type, a field path does not fit, or the topics never overlap in time.
    """
    topics = _read_topics(bag, mapping, MessageTypes(distro))
    clock = mapping.observation[0].topic
    start = max(int(stamps[0]) for stamps, _ in topics.values())
    end = min(int(topics[clock][0][-1]), int(topics[mapping.action.topic][0][-1]))
    period = _NS / mapping.rate_hz
    if end < start:
        msg = (
            f"bag {bag}: the mapped topics never overlap in time: "
            f"check that {clock} and the others were recorded together"
        )
        raise ConfigError(msg)
    tolerance = {name: mapping.tolerance_ns(times) for name, (times, _) in topics.items()}
    # The last state may be stamped up to the tolerance early and still gets its own grid step.
    steps = int((end + tolerance[clock] - start) // period) + 1
    grid = start + np.round(np.arange(steps) * period).astype(np.int64)
    columns = [
        resample(*topics[t.topic], grid, method=t.resample, tolerance_ns=tolerance[t.topic])
        for t in mapping.observation
    ]
    action_topic = mapping.action.topic
    actions = resample(*topics[action_topic], grid, method="zoh", tolerance_ns=tolerance[action_topic])
    return Episode(bag=bag, times=grid, observations=np.concatenate(columns, axis=1), actions=actions)


def read_episodes(
    bag_dir: Path, *, mapping: BagMapping = DEFAULT_MAPPING, distro: str = "jazzy"
) -> list[Episode]:
    """Every bag under ``bag_dir`` (see :func:`find_bags`), resampled, in name order.

    Raises:
        ConfigError: no bags, or as :func:`read_episode`.
    """
    return [read_episode(bag, mapping=mapping, distro=distro) for bag in find_bags(bag_dir)]


def split_episodes(
    episodes: Sequence[Episode], *, val_fraction: float, seed: int
) -> tuple[list[Episode], list[Episode]]:
    """Split whole episodes into ``(train, val)``, shuffled by ``seed``.

    Raises:
        ConfigError: fewer than two episodes, or ``val_fraction`` outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        msg = f"val_fraction ({val_fraction}) must be in (0, 1): use e.g. 0.2"
        raise ConfigError(msg)
    if len(episodes) < 2:
        msg = f"{len(episodes)} episode(s) cannot be split into train and validation: record at least 2"
        raise ConfigError(msg)
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = min(len(episodes) - 1, max(1, round(val_fraction * len(episodes))))
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return [episodes[i] for i in train], [episodes[i] for i in val]


@dataclass(frozen=True, kw_only=True)
class Normalizer:
    """Per-dimension mean and standard deviation of observations and actions (training set).

    Stored with the model, so serving normalises exactly as training did.
    """

    observation_mean: tuple[float, ...]
    observation_std: tuple[float, ...]
    action_mean: tuple[float, ...]
    action_std: tuple[float, ...]

    @classmethod
    def fit(cls, episodes: Sequence[Episode]) -> Normalizer:
        """Statistics over every sample of ``episodes``.

        Raises:
            ConfigError: no samples.
        """
        if not episodes or sum(len(e) for e in episodes) == 0:
            msg = "no samples to compute normalisation statistics from: record longer or more episodes"
            raise ConfigError(msg)
        obs = np.concatenate([e.observations for e in episodes])
        act = np.concatenate([e.actions for e in episodes])
        return cls(
            observation_mean=tuple(float(v) for v in obs.mean(axis=0)),
            observation_std=tuple(float(v) for v in np.maximum(obs.std(axis=0), _STD_FLOOR)),
            action_mean=tuple(float(v) for v in act.mean(axis=0)),
            action_std=tuple(float(v) for v in np.maximum(act.std(axis=0), _STD_FLOOR)),
        )

    def normalize_observations(self, observations: FloatArray) -> FloatArray:
        """``(x - mean) / std`` along the last axis."""
        result: FloatArray = (observations - np.asarray(self.observation_mean)) / np.asarray(
            self.observation_std
        )
        return result

    def normalize_actions(self, actions: FloatArray) -> FloatArray:
        """``(a - mean) / std`` along the last axis."""
        result: FloatArray = (actions - np.asarray(self.action_mean)) / np.asarray(self.action_std)
        return result

    def denormalize_actions(self, actions: FloatArray) -> FloatArray:
        """The inverse of :meth:`normalize_actions`."""
        result: FloatArray = actions * np.asarray(self.action_std) + np.asarray(self.action_mean)
        return result


class ChunkDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Each observation with the next ``chunk`` actions, normalised.

    Sample ``k`` of an episode pairs observation ``k`` with actions ``k .. k+chunk-1``. Near the
    end of an episode the missing actions repeat the last one and are masked out (``mask`` False),
    so the loss never trains on actions the demonstrator did not take. All samples are held as
    three tensors (``observations``, ``actions``, ``mask``) so a training loop can index batches
    directly; ``__getitem__`` serves one sample for samplers such as DistributedSampler.

    Args:
        episodes: resampled episodes.
        chunk: actions per sample (the policy's open-loop horizon).
        normalizer: statistics to normalise with (fit on the training episodes).

    Raises:
        ConfigError: ``chunk`` < 1 or no samples.
    """

    def __init__(self, episodes: Sequence[Episode], *, chunk: int, normalizer: Normalizer) -> None:
        if chunk < 1:
            msg = f"chunk ({chunk}) must be >= 1: use the number of actions predicted per observation"
            raise ConfigError(msg)
        if not episodes:
            msg = "no episodes for the dataset: record at least one"
            raise ConfigError(msg)
        obs_rows: list[FloatArray] = []
        act_rows: list[FloatArray] = []
        mask_rows: list[npt.NDArray[np.bool_]] = []
        steps = np.arange(chunk)
        for episode in episodes:
            length = len(episode)
            index = np.arange(length)[:, None] + steps[None, :]
            mask_rows.append(index < length)
            act_rows.append(normalizer.normalize_actions(episode.actions)[np.minimum(index, length - 1)])
            obs_rows.append(normalizer.normalize_observations(episode.observations))
        self.chunk = chunk
        self.observations = torch.from_numpy(np.concatenate(obs_rows).astype(np.float32))
        self.actions = torch.from_numpy(np.concatenate(act_rows).astype(np.float32))
        self.mask = torch.from_numpy(np.concatenate(mask_rows))

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.observations[index], self.actions[index], self.mask[index]
