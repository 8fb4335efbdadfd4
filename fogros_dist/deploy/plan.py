"""Plan a deployment: validate everything that can be checked before any machine exists.

Bad input fails here, in one line naming the value and the fix: unknown provider, bad machine
option, unknown message type, invalid topic name, a node on an undefined machine. The plan also
works out which topics each side's bridge carries in which direction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fogros_dist.deploy.state import validate_deployment_name
from fogros_dist.errors import ConfigError
from fogros_dist.registry import get_provider
from fogros_dist.spec import DeploymentSpec, TopicSpec

__all__ = ["MachinePlan", "Plan", "make_plan"]


@dataclass(frozen=True, kw_only=True)
class MachinePlan:
    """One machine's share: its bridge carries ``inbound`` (robot -> machine) and ``outbound``."""

    machine: str
    provider: str
    inbound: tuple[TopicSpec, ...]
    outbound: tuple[TopicSpec, ...]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A validated deployment and each bridge's topics."""

    spec: DeploymentSpec
    machines: tuple[MachinePlan, ...]

    @property
    def robot_outbound(self) -> tuple[TopicSpec, ...]:
        """Topics the robot sends: every machine's inbound topics, once each."""
        return _unique(t for m in self.machines for t in m.inbound)

    @property
    def robot_inbound(self) -> tuple[TopicSpec, ...]:
        """Topics the robot receives: every machine's outbound topics, once each."""
        return _unique(t for m in self.machines for t in m.outbound)


def make_plan(spec: DeploymentSpec) -> Plan:
    """Validate ``spec`` and split its topics per machine; raise ConfigError (or a subclass)."""
    # Imported here so that `import fogros_dist.deploy` stays cheap for the CLI's --help.
    from fogros_dist.ros.names import validate_topic_name
    from fogros_dist.ros.types import MessageTypes

    validate_deployment_name(spec.name)
    if not spec.nodes:
        msg = f"deployment {spec.name!r} has no nodes: add at least one node to run on a machine"
        raise ConfigError(msg)
    types = MessageTypes(spec.distro)
    seen_machines: set[str] = set()
    for machine in spec.machines:
        if machine.name in seen_machines:
            msg = f"machine name {machine.name!r} is used twice: give each machine its own name"
            raise ConfigError(msg)
        seen_machines.add(machine.name)
        get_provider(machine.provider).validate(machine)
    seen_nodes: set[str] = set()
    for node in spec.nodes:
        if node.name in seen_nodes:
            msg = f"node name {node.name!r} is used twice: give each node its own name"
            raise ConfigError(msg)
        seen_nodes.add(node.name)
        spec.machine(node.machine)
        for topic in (*node.topics_in, *node.topics_out):
            validate_topic_name(topic.name)
            if topic.type is not None:
                types.resolve(topic.type)
        both = {t.name for t in node.topics_in} & {t.name for t in node.topics_out}
        if both:
            msg = (
                f"node {node.name!r}: topic {sorted(both)[0]!r} is both in topics_in and topics_out: "
                f"a bridged topic flows one way; remap one end to another name"
            )
            raise ConfigError(msg)
    machines = []
    for machine in spec.machines:
        nodes = spec.nodes_on(machine.name)
        machines.append(
            MachinePlan(
                machine=machine.name,
                provider=machine.provider,
                inbound=_unique(t for n in nodes for t in n.topics_in),
                outbound=_unique(t for n in nodes for t in n.topics_out),
            )
        )
    _check_single_producer(machines)
    return Plan(spec=spec, machines=tuple(machines))


def _unique(topics: Iterable[TopicSpec]) -> tuple[TopicSpec, ...]:
    by_name: dict[str, TopicSpec] = {}
    for topic in topics:
        known = by_name.setdefault(topic.name, topic)
        if known.type is not None and topic.type is not None and known.type != topic.type:
            msg = (
                f"topic {topic.name!r} is declared with two types, {known.type!r} and {topic.type!r}: "
                f"use one type per topic"
            )
            raise ConfigError(msg)
    return tuple(by_name.values())


def _check_single_producer(machines: list[MachinePlan]) -> None:
    # Two machines publishing the same topic back to the robot would interleave silently.
    producers: dict[str, str] = {}
    for plan in machines:
        for topic in plan.outbound:
            other = producers.setdefault(topic.name, plan.machine)
            if other != plan.machine:
                msg = (
                    f"topic {topic.name!r} comes back from two machines ({other!r} and {plan.machine!r}): "
                    f"give each machine's output its own topic name"
                )
                raise ConfigError(msg)
