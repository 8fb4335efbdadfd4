"""Plan a deployment: validate everything that can be checked before any machine exists.

Bad input fails here, in one line naming the value and the fix: unknown provider, bad machine
option, unknown message type, invalid topic name, a node on an undefined machine, a machine or node
name that breaks the naming rules, a shipped file that does not exist. The plan also works out
which topics each side's bridge carries in which direction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.deploy.state import validate_deployment_name
from fogros_dist.deploy.workspace import workspace_for
from fogros_dist.errors import ConfigError
from fogros_dist.registry import get_provider
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, TopicSpec

__all__ = ["ROBOT", "MachinePlan", "Plan", "make_plan"]

# The robot's own side of a deployment: its bridge, logs and stage lines go by this name.
ROBOT = "robot"
# Machine names and process labels become directory and file names, state keys and log prefixes.
_MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PROCESS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The bridge's process on each machine is called this; a node may not be.
_RESERVED_PROCESS_NAMES = frozenset({"bridge", "robot-bridge"})
_OUTPUTS = ("screen", "log", "both")


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
        _check_machine_name(machine)
        if machine.name in seen_machines:
            msg = f"machine name {machine.name!r} is used twice: give each machine its own name"
            raise ConfigError(msg)
        seen_machines.add(machine.name)
        get_provider(machine.provider).validate(machine)
    seen_nodes: set[str] = set()
    seen_processes: set[str] = set()
    for node in spec.nodes:
        full = _check_node_name(node)
        if full in seen_nodes:
            msg = f"node {full!r} is defined twice: give each node its own name or namespace"
            raise ConfigError(msg)
        seen_nodes.add(full)
        label = _check_process_name(node)
        if label in seen_processes:
            msg = (
                f"node {full!r}: process label {label!r} is used by another node too: "
                f"give one of them its own exec_name"
            )
            raise ConfigError(msg)
        seen_processes.add(label)
        spec.machine(node.machine)
        _check_node_settings(node, full)
        _check_files(node, full)
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
    for machine in spec.machines:
        if get_provider(machine.provider).capabilities.remote:
            # A workspace that does not exist, or a package.xml colcon would refuse, fails now.
            workspace_for(spec, machine.name)
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


def _check_machine_name(machine: MachineSpec) -> None:
    if machine.name == ROBOT:
        msg = f"machine name {ROBOT!r} is reserved for this robot: call the machine e.g. 'gpu'"
        raise ConfigError(msg)
    if not _MACHINE_NAME.fullmatch(machine.name):
        msg = (
            f"machine name {machine.name!r} is invalid: use up to 63 letters, digits, '_', '.' and "
            f"'-', starting with a letter or digit (e.g. 'gpu-1')"
        )
        raise ConfigError(msg)


def _check_node_name(node: NodeSpec) -> str:
    """The node's full name; ConfigError if its name or namespace breaks the ROS 2 rules."""
    from fogros_dist.ros.node_names import full_node_name

    if node.namespace and not node.namespace.startswith("/"):
        msg = f"node {node.name!r}: namespace {node.namespace!r} is relative: use '/{node.namespace}'"
        raise ConfigError(msg)
    if "/" in node.name:
        msg = f"node name {node.name!r} contains '/': put the namespace in namespace=, not in the name"
        raise ConfigError(msg)
    return full_node_name(namespace=node.namespace, name=node.name)


def _check_process_name(node: NodeSpec) -> str:
    label = node.process_name
    if label in _RESERVED_PROCESS_NAMES:
        msg = f"node {node.name!r}: process label {label!r} is reserved for the bridge: set another exec_name"
        raise ConfigError(msg)
    if not _PROCESS_NAME.fullmatch(label):
        msg = (
            f"node {node.name!r}: exec_name {label!r} is invalid: use letters, digits, '_', '.' and '-' "
            f"(it names the node's log files)"
        )
        raise ConfigError(msg)
    return label


def _check_node_settings(node: NodeSpec, full: str) -> None:
    if node.output not in _OUTPUTS:
        msg = f"node {full!r}: output {node.output!r} is not supported: use one of {', '.join(_OUTPUTS)}"
        raise ConfigError(msg)
    for what, value in (
        ("respawn_delay", node.respawn_delay),
        ("sigterm_timeout", node.sigterm_timeout),
        ("sigkill_timeout", node.sigkill_timeout),
    ):
        if not value >= 0:
            msg = f"node {full!r}: {what} {value!r} is negative: use a number of seconds >= 0"
            raise ConfigError(msg)
    if node.respawn_max_retries < -1:
        msg = (
            f"node {full!r}: respawn_max_retries {node.respawn_max_retries} is invalid: "
            f"use -1 (forever), 0 or a positive count"
        )
        raise ConfigError(msg)
    for key, _value in node.env:
        if not _ENV_NAME.fullmatch(key):
            msg = f"node {full!r}: environment variable name {key!r} is invalid: use letters, digits and '_'"
            raise ConfigError(msg)
    if any(not word for word in node.prefix):
        msg = (
            f"node {full!r}: prefix {list(node.prefix)!r} has an empty word: give a command, e.g. 'nice -n 5'"
        )
        raise ConfigError(msg)


def _check_files(node: NodeSpec, full: str) -> None:
    names: set[str] = set()
    for shipped in node.files:
        if not _FILE_NAME.fullmatch(shipped.name):
            msg = (
                f"node {full!r}: shipped file name {shipped.name!r} is invalid: use a plain file name "
                f"(letters, digits, '_', '.', '-'; no directories)"
            )
            raise ConfigError(msg)
        if shipped.name in names:
            msg = f"node {full!r}: two shipped files are both called {shipped.name!r}: rename one of them"
            raise ConfigError(msg)
        names.add(shipped.name)
        source = Path(shipped.source)
        if not source.is_absolute() or not source.is_file():
            msg = f"node {full!r}: file {shipped.source!r} to ship does not exist here: check the path"
            raise ConfigError(msg)
    for name in node.parameter_files:
        if name not in names:
            msg = (
                f"node {full!r}: parameter file {name!r} is not among the node's shipped files "
                f"({', '.join(sorted(names)) or 'none'}): ship it in files"
            )
            raise ConfigError(msg)
