"""policy_node: serve a trained imitation policy as velocity commands.

Subscribes the observation topics the policy was trained on (``/joint_states``, the clock, and
``/goal``, held between messages) and answers every joint state with one
``geometry_msgs/msg/TwistStamped`` on ``/cmd`` carrying that joint state's header, so the robot
can pair each command with the observation it answers. The robot's state stream clocks the node:
one command per observation, at the control rate the robot publishes at.

Commands come from open-loop action chunks: an observation that needs a new plan (the chunk is
used up after ``execute`` steps, the goal changed, or the state stream jumped or paused) runs the
model once; the following observations step through the chunk without running it. Actions outside
the policy's bounds are clipped with a warning naming the topic and the value; observations with
NaN/inf or too few values are warned about and skipped, and the node keeps serving.

Parameters (``--ros-args -p name:=value``): ``model`` (default ``default_model_dir()/policy.pt``),
``execute`` (actions per chunk before replanning; default the whole chunk), ``threads`` (torch
CPU threads, default 1: a small MLP is fastest on one). Remap topics with ``-r``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fogros_dist.errors import ConfigError
from fogros_dist.nodes.runtime import NodeContext, guarded, run_node
from fogros_dist.ros.graph import RawPublisher
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec
from fogros_dist.workloads.base import default_model_dir
from fogros_dist.workloads.policy.dataset import FloatArray, TopicFields
from fogros_dist.workloads.policy.messages import TWIST_STAMPED, stamp_ns
from fogros_dist.workloads.policy.model import LoadedPolicy, load_policy

__all__ = ["DEFAULT_MODEL_NAME", "PolicyServer", "main", "setup"]

DEFAULT_MODEL_NAME = "policy.pt"
# A held-back first observation (no goal yet) is still answered if the goal comes this soon.
_PENDING_MAX_S = 0.5
# A gap of more than this many periods between states means the plan is stale: replan.
_GAP_PERIODS = 2.5
_WARN_INTERVAL_S = 1.0
_QOS = QosSpec(depth=10)
_TWIST_FIELDS = tuple(f"twist.{part}.{axis}" for part in ("linear", "angular") for axis in "xyz")


class _Throttle:
    """At most one warning per key per interval; counts what it held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self._interval:
            self._last[key] = now
            return True, self._held.pop(key, 0)
        self._held[key] = self._held.get(key, 0) + 1
        return False, 0


class _TwistCommand:
    """Builds TwistStamped commands from action vectors mapped onto ``twist.linear/angular.*``."""

    def __init__(self, types: MessageTypes, action: TopicFields) -> None:
        if action.type != TWIST_STAMPED or any(f not in _TWIST_FIELDS for f in action.fields):
            msg = (
                f"the policy's action is {action.type} fields {', '.join(action.fields)}: policy_node "
                f"publishes {TWIST_STAMPED} with fields among {', '.join(_TWIST_FIELDS)}; "
                "retrain with such a mapping"
            )
            raise ConfigError(msg)
        self._types = types
        self._slots = [(f.split(".")[1], "xyz".index(f.split(".")[2])) for f in action.fields]
        self._twist_stamped = types.message_class(TWIST_STAMPED)
        self._twist = types.message_class("geometry_msgs/msg/Twist")
        self._vector = types.message_class("geometry_msgs/msg/Vector3")

    def __call__(self, header: Any, action: FloatArray) -> bytes:
        parts = {"linear": [0.0, 0.0, 0.0], "angular": [0.0, 0.0, 0.0]}
        for (part, axis), value in zip(self._slots, action, strict=True):
            parts[part][axis] = float(value)
        twist = self._twist(linear=self._vector(*parts["linear"]), angular=self._vector(*parts["angular"]))
        return self._types.serialize(TWIST_STAMPED, self._twist_stamped(header=header, twist=twist))


@dataclass(frozen=True, kw_only=True)
class _Trigger:
    header: Any
    values: FloatArray
    received: float


class PolicyServer:
    """The node's logic, apart from the graph: observations in, stamped commands out.

    Args:
        policy: the loaded policy.
        types: message types of the graph's ROS 2 distribution.
        publish: sends one command's CDR bytes.
        action_topic: the command topic's (remapped) name, for warnings.
        observation_topics: the observation topics' (remapped) names, in mapping order.
        execute: actions applied per chunk before replanning (1..chunk).
        log: where warnings go.
    """

    def __init__(
        self,
        *,
        policy: LoadedPolicy,
        types: MessageTypes,
        publish: Callable[[bytes], None],
        action_topic: str,
        observation_topics: tuple[str, ...],
        execute: int,
        log: logging.Logger,
    ) -> None:
        chunk = policy.model.config.chunk
        if not 1 <= execute <= chunk:
            msg = f"execute ({execute}) must be in 1..{chunk} (the policy's chunk): use -p execute:=N"
            raise ConfigError(msg)
        clock = policy.mapping.observation[0]
        if "header" not in {f.name for f in dataclasses.fields(types.message_class(clock.type))}:
            msg = (
                f"the policy's first observation topic {clock.topic} is a {clock.type}, which has no header "
                "to stamp replies with: retrain with a stamped state topic first in the mapping"
            )
            raise ConfigError(msg)
        self._policy = policy
        self._mapping = policy.mapping
        self._types = types
        self._publish = publish
        self._command = _TwistCommand(types, policy.mapping.action)
        self._action_topic = action_topic
        self._topics = observation_topics
        self._execute = execute
        self._log = log
        self._period_ns = 1e9 / policy.mapping.rate_hz
        self._lock = threading.Lock()
        self._held: list[FloatArray | None] = [None] * (len(policy.mapping.observation) - 1)
        self._pending: _Trigger | None = None
        self._chunk: FloatArray | None = None
        self._step = 0
        self._planned_with: list[FloatArray] = []
        self._last_stamp: int | None = None
        self._throttle = _Throttle(_WARN_INTERVAL_S)
        self.plans = 0
        self.commands = 0

    def callback(self, index: int) -> Callable[[bytes], None]:
        """The subscription callback of observation topic ``index`` (0: the clock)."""
        return self.on_clock if index == 0 else lambda cdr: self.on_held(index, cdr)

    def _read(self, index: int, cdr: bytes) -> tuple[Any, FloatArray]:
        fields = self._mapping.observation[index]
        msg = self._types.deserialize(fields.type, cdr)
        values = fields.extract(msg)  # ValueError names a short array and its length
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            text = f"non-finite observation {fields.fields[i]}={values[i]}: publish finite numbers"
            raise ValueError(text)
        return msg, values

    def on_clock(self, cdr: bytes) -> None:
        """A state message: answer it with the next command (or hold it until every topic is known).

        Raises:
            ValueError: the message is malformed, too short or not finite (the caller logs it).
        """
        msg, values = self._read(0, cdr)
        with self._lock:
            missing = [self._topics[i + 1] for i, held in enumerate(self._held) if held is None]
            if missing:
                if self._pending is None:
                    self._log.info("waiting for %s before acting on %s", ", ".join(missing), self._topics[0])
                self._pending = _Trigger(header=msg.header, values=values, received=time.monotonic())
                return
            self._act(msg.header, values)

    def on_held(self, index: int, cdr: bytes) -> None:
        """A message on a held topic (the goal): remember it; answer a waiting state if now complete.

        Raises:
            ValueError: as :meth:`on_clock`.
        """
        _msg, values = self._read(index, cdr)
        with self._lock:
            self._held[index - 1] = values
            pending, self._pending = self._pending, None
            if pending is None or any(h is None for h in self._held):
                self._pending = pending
                return
            if time.monotonic() - pending.received <= _PENDING_MAX_S:
                self._act(pending.header, pending.values)

    def _needs_plan(self, stamp: int, held: list[FloatArray]) -> bool:
        if self._chunk is None or self._step >= self._execute or self._last_stamp is None:
            return True
        # A state older than the last, or one after a pause, means the open-loop plan is stale.
        if stamp <= self._last_stamp or stamp - self._last_stamp > _GAP_PERIODS * self._period_ns:
            return True
        return any(not np.array_equal(a, b) for a, b in zip(held, self._planned_with, strict=True))

    def _act(self, header: Any, values: FloatArray) -> None:
        held = [h for h in self._held if h is not None]
        stamp = stamp_ns(header)
        if self._needs_plan(stamp, held):
            observation = np.concatenate([values, *held])
            self._chunk = self._policy.model.predict(observation)[0]
            self._step = 0
            self._planned_with = [h.copy() for h in held]
            self.plans += 1
        assert self._chunk is not None
        action = self._chunk[self._step]
        self._step += 1
        self._last_stamp = stamp
        clipped = np.clip(action, self._policy.action_low, self._policy.action_high)
        if not np.array_equal(clipped, action):
            self._warn_clipped(action)
        self._publish(self._command(header, clipped))
        self.commands += 1

    def _warn_clipped(self, action: FloatArray) -> None:
        allowed, held_back = self._throttle.allow("clip")
        if not allowed:
            return
        low, high = self._policy.action_low, self._policy.action_high
        i = int(np.flatnonzero((action < low) | (action > high))[0])
        more = f" ({held_back} more clipped since the last warning)" if held_back else ""
        self._log.warning(
            "clipped action on %s: %s=%.4g outside [%.4g, %.4g]%s",
            self._action_topic,
            self._mapping.action.fields[i],
            action[i],
            low[i],
            high[i],
            more,
        )


def _int_param(ctx: NodeContext, name: str, default: int) -> int:
    text = ctx.args.param(name, str(default))
    try:
        return int(text)
    except ValueError:
        msg = f"parameter {name}:={text!r} is not an integer: use -p {name}:={default}"
        raise ConfigError(msg) from None


def setup(ctx: NodeContext) -> None:
    """Load the policy and declare the node's publisher and subscriptions.

    Raises:
        ConfigError: the model is missing (one line naming the path and `fogros-dist train
            policy`) or unreadable, or a parameter is invalid.
    """
    import torch

    model_path = Path(ctx.args.param("model", str(default_model_dir() / DEFAULT_MODEL_NAME)))
    policy = load_policy(model_path)
    threads = _int_param(ctx, "threads", 1)
    if threads < 1:
        msg = f"parameter threads:={threads} must be >= 1"
        raise ConfigError(msg)
    torch.set_num_threads(threads)
    chunk = policy.model.config.chunk
    execute = _int_param(ctx, "execute", chunk)
    types = MessageTypes(ctx.distro)
    mapping = policy.mapping
    action_topic = ctx.args.topic(mapping.action.topic)
    publisher: RawPublisher = ctx.graph.publisher(
        TopicSpec(name=action_topic, type=mapping.action.type, qos=_QOS)
    )
    topics = tuple(ctx.args.topic(t.topic) for t in mapping.observation)
    server = PolicyServer(
        policy=policy,
        types=types,
        publish=publisher.publish,
        action_topic=action_topic,
        observation_topics=topics,
        execute=execute,
        log=ctx.log,
    )
    for index, (fields, topic) in enumerate(zip(mapping.observation, topics, strict=True)):
        spec = TopicSpec(name=topic, type=fields.type, qos=_QOS)
        ctx.graph.subscribe(spec, guarded(ctx.log, topic, server.callback(index)))
    ctx.log.info(
        "policy %s (chunk %d, replan every %d): %s -> %s at %g Hz",
        model_path,
        chunk,
        execute,
        " + ".join(topics),
        action_topic,
        mapping.rate_hz,
    )


def main() -> int:
    """Console-script entry point."""
    return run_node("policy_node", setup)


if __name__ == "__main__":
    sys.exit(main())
