"""Plan a deployment: validate everything that can be checked before any machine exists.

Bad input fails here, in one line naming the value and the fix: unknown provider, bad machine
option, unknown message type, invalid topic name, a node on an undefined machine, a machine or node
name that breaks the naming rules, a shipped file that does not exist. The plan also works out
which topics each side's bridge carries in which direction.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fogros_dist.deploy.state import validate_deployment_name
from fogros_dist.deploy.workspace import workspace_for
from fogros_dist.errors import ConfigError
from fogros_dist.registry import get_provider
from fogros_dist.spec import DeploymentSpec, InterfaceDef, MachineSpec, NodeSpec, ServiceSpec, TopicSpec

if TYPE_CHECKING:
    from fogros_dist.ros.types import MessageTypes

__all__ = ["ROBOT", "MachinePlan", "Plan", "bridged_services", "bridged_topics", "make_plan"]

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
    """One machine's share: its bridge carries ``inbound`` (robot -> machine) and ``outbound``
    topics (its nodes' own, and their actions' feedback and status), the ``services`` its nodes
    serve to the robot (their own, their actions' and their parameter services) and the
    ``robot_services`` served on the robot that its nodes call."""

    machine: str
    provider: str
    inbound: tuple[TopicSpec, ...]
    outbound: tuple[TopicSpec, ...]
    services: tuple[ServiceSpec, ...] = ()
    robot_services: tuple[ServiceSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A validated deployment and each bridge's topics.

    ``spec`` is the deployment as given, with ``interfaces`` completed: every definition of a
    type the distro's stock types lack that its topics, services and actions use.
    """

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

    @property
    def robot_remote_services(self) -> tuple[ServiceSpec, ...]:
        """Services the robot bridge serves for servers on machines: every machine's services."""
        return _unique_services(s for m in self.machines for s in m.services)

    @property
    def robot_local_services(self) -> tuple[ServiceSpec, ...]:
        """Services served on the robot that machines call: every machine's robot_services, once."""
        return _unique_services(s for m in self.machines for s in m.robot_services)


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
    # The definitions the distro's stock types lack, registered so the checks below know them.
    interfaces = _interfaces_for(spec, types)
    if interfaces != spec.interfaces:
        spec = dataclasses.replace(spec, interfaces=interfaces)
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
        _check_services(node, full)
        for topic in (*node.topics_in, *node.topics_out):
            validate_topic_name(topic.name)
            if topic.type is not None:
                types.resolve(topic.type)
            # A bad codec fails here, before anything starts, not in the bridge on the machine.
            from fogros_dist.net.codecs import check_codec_for_type, parse_codec

            check_codec_for_type(parse_codec(topic.codec, topic=topic.name), topic.type, topic=topic.name)
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
    machines = _machine_plans(spec)
    _check_single_producer(machines)
    _check_single_server(machines)
    _warn_qos_conflicts(spec)
    return Plan(spec=spec, machines=tuple(machines))


def _interfaces_for(spec: DeploymentSpec, types: MessageTypes) -> tuple[InterfaceDef, ...]:
    """The spec's own interface definitions, then those its topics', services' and actions'
    types need from the robot's AMENT_PREFIX_PATH and the deployment's workspaces.

    Raises:
        UnknownMessageType: a type is defined nowhere (where it looked, and the fix).
        ConfigError: a definition does not parse.
    """
    from fogros_dist.errors import UnknownMessageType
    from fogros_dist.ros.interface_text import split_interface_name
    from fogros_dist.ros.interfaces import InterfaceIndex, needed_interfaces, register_interfaces
    from fogros_dist.workspace.overlay import overlay_workspaces

    register_interfaces(types, spec.interfaces)
    wanted: list[str] = []
    for node in spec.nodes:
        named: list[str | None] = [t.type for t in (*node.topics_in, *node.topics_out)]
        named += [s.type for s in (*node.services, *node.robot_services)]
        named += [a.type for a in (*node.actions, *node.robot_actions)]
        for name in named:
            try:
                split_interface_name(name or "")
            except UnknownMessageType:
                continue  # none (learned from the graph), or malformed: its own check names it
            wanted.append(str(name))
    if all(types.knows_interface(name) for name in wanted):
        return spec.interfaces
    workspaces = [Path(spec.workspace).expanduser()] if spec.workspace else []
    for machine in spec.machines:
        option = machine.option("workspace")
        if option:
            workspaces.append(Path(str(option)).expanduser())
    index = InterfaceIndex.from_environment(workspaces=(*workspaces, *overlay_workspaces()))
    found = needed_interfaces(wanted, types=types, index=index)
    register_interfaces(types, found)
    return (*spec.interfaces, *found)


def _machine_plans(spec: DeploymentSpec) -> list[MachinePlan]:
    machines = []
    for machine in spec.machines:
        nodes = spec.nodes_on(machine.name)
        machines.append(
            MachinePlan(
                machine=machine.name,
                provider=machine.provider,
                inbound=_unique(t for n in nodes for t in bridged_topics(n)[0]),
                outbound=_unique(t for n in nodes for t in bridged_topics(n)[1]),
                services=_unique_services(s for n in nodes for s in bridged_services(n)[0]),
                robot_services=_unique_services(s for n in nodes for s in bridged_services(n)[1]),
            )
        )
    return machines


def bridged_topics(node: NodeSpec) -> tuple[tuple[TopicSpec, ...], tuple[TopicSpec, ...]]:
    """The topics the bridges carry for ``node``: (robot -> machine, machine -> robot). Besides
    its ``topics_in``/``topics_out``, an action's feedback and status topics flow from the side
    of its server: the node's own ``actions`` back to the robot, its ``robot_actions`` to it."""
    from fogros_dist.ros.actions import action_parts

    served = tuple(t for a in node.actions for t in action_parts(a).topics)
    called = tuple(t for a in node.robot_actions for t in action_parts(a).topics)
    return (*node.topics_in, *called), (*node.topics_out, *served)


def bridged_services(node: NodeSpec) -> tuple[tuple[ServiceSpec, ...], tuple[ServiceSpec, ...]]:
    """The services the bridges carry for ``node``: (served by the node on its machine, served on
    the robot for the node to call). The first holds its ``services``, its ``actions``' three
    services and, with ``bridge_parameters``, its parameter services; the second its
    ``robot_services`` and its ``robot_actions``' services."""
    from fogros_dist.ros.actions import action_parts
    from fogros_dist.ros.parameters import parameter_services

    served = [*node.services, *(s for a in node.actions for s in action_parts(a).services)]
    if node.bridge_parameters:
        served += parameter_services(namespace=node.namespace, name=node.name)
    called = [*node.robot_services, *(s for a in node.robot_actions for s in action_parts(a).services)]
    return tuple(served), tuple(called)


def _check_services(node: NodeSpec, full: str) -> None:
    """Service and action names (topic-name rules) and types (``pkg/srv/T``, ``pkg/action/T``);
    one name used twice by the node; a name both served by the node and called on the robot."""
    from fogros_dist.ros.actions import validate_action_type
    from fogros_dist.ros.names import validate_topic_name, validate_type_name

    for service in (*node.services, *node.robot_services):
        validate_topic_name(service.name)
        if service.type is not None:
            validate_type_name(service.type)
            if service.type.split("/")[1] != "srv":
                msg = (
                    f"node {full!r}: service {service.name} type {service.type!r} is not a service "
                    f"type: use 'package/srv/Type' (an action goes in actions=)"
                )
                raise ConfigError(msg)
    for action in (*node.actions, *node.robot_actions):
        validate_topic_name(action.name)
        if action.type is not None:
            validate_action_type(action.type)
    served, called = bridged_services(node)
    for names, what in (([s.name for s in served], "served by"), ([s.name for s in called], "called by")):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            msg = (
                f"service {twice[0]} is {what} node {full!r} twice (as a service, an action's part or "
                f"a parameter service): list it once"
            )
            raise ConfigError(msg)
    both = sorted({s.name for s in served} & {s.name for s in called})
    if both:
        msg = (
            f"node {full!r}: service {both[0]} is both served by the node and called on the robot: "
            f"a bridged service has its server on one side; remove it from one list"
        )
        raise ConfigError(msg)


def _unique_services(services: Iterable[ServiceSpec]) -> tuple[ServiceSpec, ...]:
    by_name: dict[str, ServiceSpec] = {}
    for service in services:
        known = by_name.setdefault(service.name, service)
        if known.type is not None and service.type is not None and known.type != service.type:
            msg = (
                f"service {service.name!r} is declared with two types, {known.type!r} and "
                f"{service.type!r}: use one type per service"
            )
            raise ConfigError(msg)
    return tuple(by_name.values())


def _check_single_server(machines: list[MachinePlan]) -> None:
    # Two machines serving one service to the robot: each call would go to whichever answers first.
    servers: dict[str, str] = {}
    for plan in machines:
        for service in plan.services:
            other = servers.setdefault(service.name, plan.machine)
            if other != plan.machine:
                msg = (
                    f"service {service.name!r} is served by nodes on two machines ({other!r} and "
                    f"{plan.machine!r}): give each machine's service its own name"
                )
                raise ConfigError(msg)
    robot_served = {s.name for plan in machines for s in plan.robot_services}
    for plan in machines:
        for service in plan.services:
            if service.name in robot_served:
                msg = (
                    f"service {service.name!r} is served on machine {plan.machine!r} and called on the "
                    f"robot by another node: a bridged service has its server on one side"
                )
                raise ConfigError(msg)


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


def _warn_qos_conflicts(spec: DeploymentSpec) -> None:
    """Warn (one line each) about explicit QoS that can be seen to match nothing from the spec
    alone: a topic one node publishes with a QoS that a node subscribing to it can never match,
    or a topic subscribed twice with different QoS (the bridge uses the first)."""
    from fogros_dist.logs import module_logger
    from fogros_dist.ros.qos import describe, mismatch
    from fogros_dist.spec import QosSpec

    log = module_logger(__name__)
    offered: dict[str, tuple[str, QosSpec]] = {}
    requested: dict[str, tuple[str, QosSpec]] = {}
    for node in spec.nodes:
        for topic in node.topics_out:
            if topic.qos is not None:
                offered.setdefault(topic.name, (node.name, topic.qos))
        for topic in node.topics_in:
            if topic.qos is None:
                continue
            first = requested.setdefault(topic.name, (node.name, topic.qos))
            if first[1] != topic.qos:
                log.warning(
                    "topic %s: node %r takes it with QoS %s, node %r with %s; the bridge subscribes "
                    "once, with the first: give both the same qos, or none to mirror the publishers'",
                    topic.name,
                    first[0],
                    describe(first[1]),
                    node.name,
                    describe(topic.qos),
                )
    for name, (publisher, pub_qos) in offered.items():
        if name not in requested:
            continue
        subscriber, sub_qos = requested[name]
        reason = mismatch(offered=pub_qos, requested=sub_qos)
        if reason is not None:
            log.warning(
                "topic %s: node %r publishes it with QoS %s, which node %r's %s never matches (%s): "
                "change one of the two qos, or drop the subscriber's to mirror the publisher's",
                name,
                publisher,
                describe(pub_qos),
                subscriber,
                describe(sub_qos),
                reason,
            )


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
