"""QoS matching: which subscription QoS receives from every publisher found, and why a given one
would receive nothing.

DDS matches a reader to a writer only when what the writer offers is at least what the reader
requests ("request vs offered"): a reliable reader never matches a best-effort writer, a
transient-local reader never matches a volatile writer, and a reader's deadline must be no
shorter than the writer's. The bridge reads the publishers' QoS from discovery
(:meth:`~fogros_dist.ros.graph.RosGraph.discover_topic`) and subscribes with the QoS that matches
all of them, as zenoh-bridge-ros2dds adapts its readers to the writers it discovers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fogros_dist.spec import QosSpec

__all__ = [
    "KEEP_ALL_DEPTH",
    "DiscoveredTopic",
    "clamp_depth",
    "describe",
    "describe_seconds",
    "matching_subscription",
    "mismatch",
]

# A keep-all history has no depth of its own; this bounds the bridge's backlog and replay for it.
KEEP_ALL_DEPTH = 1000


def clamp_depth(depth: int) -> int:
    """A discovered history depth within QosSpec's range (1..10000)."""
    return min(max(depth, 1), 10_000)


@dataclass(frozen=True)
class DiscoveredTopic:
    """A topic's publishers as discovery saw them: their type and the QoS a subscription needs to
    receive from all of them (:func:`matching_subscription`), and how many there were."""

    type_name: str
    qos: QosSpec
    publishers: int = 1


def _longest(values: Sequence[float]) -> float:
    # 0 is infinite: it is the longest of all.
    return 0.0 if any(v == 0.0 for v in values) else max(values)


def matching_subscription(offered: Sequence[QosSpec]) -> QosSpec:
    """The QoS that matches every publisher in ``offered`` and loses as little as possible: best
    effort if any publisher is, transient local only if all are, the deepest history (keep all
    if any keeps all), the longest deadline and lifespan (0 is infinite).

    Raises:
        ValueError: ``offered`` is empty.
    """
    if not offered:
        msg = "no publisher QoS to match: discover at least one publisher first"
        raise ValueError(msg)
    return QosSpec(
        reliability="best_effort" if any(q.reliability == "best_effort" for q in offered) else "reliable",
        durability="transient_local"
        if all(q.durability == "transient_local" for q in offered)
        else "volatile",
        history="keep_all" if any(q.history == "keep_all" for q in offered) else "keep_last",
        depth=max(q.depth for q in offered),
        deadline_s=_longest([q.deadline_s for q in offered]),
        lifespan_s=_longest([q.lifespan_s for q in offered]),
    )


def mismatch(*, offered: QosSpec, requested: QosSpec) -> str | None:
    """Why a subscription with ``requested`` QoS can never receive from a publisher offering
    ``offered``, or None when they match."""
    reasons = []
    if requested.reliability == "reliable" and offered.reliability == "best_effort":
        reasons.append("a reliable subscription does not match a best-effort publisher")
    if requested.durability == "transient_local" and offered.durability == "volatile":
        reasons.append("a transient_local subscription does not match a volatile publisher")
    if requested.deadline_s and (offered.deadline_s == 0.0 or offered.deadline_s > requested.deadline_s):
        reasons.append(
            f"a subscription deadline of {requested.deadline_s:g} s does not match a publisher "
            f"deadline of {describe_seconds(offered.deadline_s)}"
        )
    return "; ".join(reasons) or None


def describe_seconds(value: float) -> str:
    """``value`` seconds for a log line; 0 is infinite."""
    return "infinite" if value == 0.0 else f"{value:g} s"


def describe(qos: QosSpec) -> str:
    """A QoS in one short phrase for a log line: ``best_effort/volatile/keep_last 5``."""
    text = f"{qos.reliability}/{qos.durability}/{qos.history} {qos.depth}"
    if qos.deadline_s:
        text += f"/deadline {qos.deadline_s:g} s"
    if qos.lifespan_s:
        text += f"/lifespan {qos.lifespan_s:g} s"
    return text
