"""Frozen dataclasses that cross process and machine boundaries.

These are the only things fogros_dist writes to state files or sends to another machine: they
serialize to JSON through :func:`to_json` / :func:`from_json`, never through pickle. Validation
that needs the ROS layer (topic names, message types) happens in :mod:`fogros_dist.deploy.plan`;
here only shape and simple ranges are checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from fogros_dist.errors import ConfigError

__all__ = [
    "ActionSpec",
    "BridgeRunSpec",
    "BridgeSpec",
    "DeploymentSpec",
    "Host",
    "InterfaceDef",
    "MachineSpec",
    "NodeSpec",
    "OptionValue",
    "OutputMode",
    "ProcessRecord",
    "QosSpec",
    "ServiceSpec",
    "ShippedFile",
    "TopicSpec",
    "default_distro",
    "from_json",
    "to_json",
]

OptionValue = str | int | float | bool
Reliability = Literal["reliable", "best_effort"]
Durability = Literal["volatile", "transient_local"]
History = Literal["keep_last", "keep_all"]

T = TypeVar("T")


def default_distro() -> str:
    """The ROS 2 distribution to assume: the sourced one (``$ROS_DISTRO``), else ``jazzy``."""
    return os.environ.get("ROS_DISTRO", "").strip() or "jazzy"


@dataclass(frozen=True, kw_only=True)
class QosSpec:
    """The QoS a bridged topic is published and subscribed with on each ROS graph.

    ``history`` ``keep_all`` keeps every unacknowledged sample (``depth`` then bounds the bridge's
    own backlog only). ``deadline_s`` and ``lifespan_s``: 0 is infinite (DDS's default).
    """

    reliability: Reliability = "reliable"
    durability: Durability = "volatile"
    depth: int = 10
    history: History = "keep_last"
    deadline_s: float = 0.0
    lifespan_s: float = 0.0

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            msg = f"QoS reliability {self.reliability!r} is invalid: use 'reliable' or 'best_effort'"
            raise ConfigError(msg)
        if self.durability not in ("volatile", "transient_local"):
            msg = f"QoS durability {self.durability!r} is invalid: use 'volatile' or 'transient_local'"
            raise ConfigError(msg)
        if not 1 <= self.depth <= 10_000:
            msg = f"QoS history depth {self.depth} is out of range: use 1..10000"
            raise ConfigError(msg)
        if self.history not in ("keep_last", "keep_all"):
            msg = f"QoS history {self.history!r} is invalid: use 'keep_last' or 'keep_all'"
            raise ConfigError(msg)
        for what, value in (("deadline_s", self.deadline_s), ("lifespan_s", self.lifespan_s)):
            if not 0.0 <= value <= 1e9:
                msg = f"QoS {what} {value} is out of range: use seconds >= 0 (0 = infinite)"
                raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """A ROS 2 topic to bridge: absolute name, message type (``pkg/msg/Type``), QoS and codec.

    ``type`` may be ``None``: the bridge then learns it from the graph (the publisher's type on the
    side that produces the topic) before it forwards anything. ``qos`` ``None`` (the default)
    mirrors the QoS discovered on the producing side (the publisher's reliability, durability,
    history and depth), the way zenoh-bridge-ros2dds does; a QoS given here is used as it is.
    ``codec`` says how the payload crosses the link (``net/codecs.py``): ``auto`` picks by type and
    image encoding, ``none`` sends the CDR as it is, ``jpeg:<quality>``, ``png``, ``zstd[:<level>]``.
    """

    name: str
    type: str | None = None
    qos: QosSpec | None = None
    codec: str = "auto"

    @property
    def effective_qos(self) -> QosSpec:
        """The QoS to use where one must be chosen now: the given one, else ROS 2's default."""
        return self.qos if self.qos is not None else QosSpec()


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """A ROS 2 service bridged as a Zenoh queryable (``ros/services`` on each graph).

    ``type`` is ``pkg/srv/Type`` (None: learned from the graph's server). ``timeout``: seconds a
    call may take end to end before the caller's bridge gives up, logs one line and answers
    nothing (the ROS client then times out as it would against a dead server).
    """

    name: str
    type: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 < self.timeout <= 7 * 24 * 3600.0:
            msg = f"service {self.name} timeout {self.timeout} is out of range: use seconds > 0"
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class ActionSpec:
    """A ROS 2 action: its ``send_goal``, ``cancel_goal`` and ``get_result`` services and its
    ``feedback`` and ``status`` topics, bridged as services and topics (``ros/actions.py``).

    ``timeout`` bounds ``send_goal`` and ``cancel_goal``; ``result_timeout`` bounds ``get_result``
    (a goal may run long).
    """

    name: str
    type: str | None = None
    timeout: float = 10.0
    result_timeout: float = 3600.0

    def __post_init__(self) -> None:
        for what, value in (("timeout", self.timeout), ("result_timeout", self.result_timeout)):
            if not 0.0 < value <= 7 * 24 * 3600.0:
                msg = f"action {self.name} {what} {value} is out of range: use seconds > 0"
                raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class InterfaceDef:
    """One interface definition that the ROS distribution's stock types lack, carried in the spec
    to every bridge so it can bridge and validate that type (``ros/interfaces.py``).

    ``name`` is ``pkg/msg/T``, ``pkg/srv/T`` or ``pkg/action/T``; ``format`` the file's kind
    (``msg``, ``srv``, ``action`` or ``idl``); ``text`` the file's contents as written.
    """

    name: str
    format: Literal["msg", "srv", "action", "idl"]
    text: str


@dataclass(frozen=True, kw_only=True)
class MachineSpec:
    """A machine a deployment needs; ``options`` are parsed and validated by its provider."""

    name: str
    provider: str = "local"
    options: tuple[tuple[str, OptionValue], ...] = ()

    def option(self, key: str, default: OptionValue | None = None) -> OptionValue | None:
        """Return option ``key``, or ``default`` when the machine does not set it."""
        return dict(self.options).get(key, default)


@dataclass(frozen=True, kw_only=True)
class ShippedFile:
    """A file on the robot that travels with a node to its machine (a parameter file, a model).

    On the machine it lies at ``<node files dir>/<name>``; the node finds that directory in
    ``$FOGROS_DIST_NODE_FILES``. ``source`` is its absolute path on the robot.
    """

    name: str
    source: str


OutputMode = Literal["screen", "log", "both"]


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """A ROS 2 node to run on a machine, and the topics the bridge carries for it.

    ``topics_in`` flow robot -> machine (the node subscribes); ``topics_out`` flow machine -> robot.
    The command line is built as ``ros2 launch`` builds a ``launch_ros`` Node's: ``[*prefix, exe,
    *arguments, (--ros-args *ros_arguments), --ros-args, -r __node:=name, (-r __ns:=namespace),
    --params-file F (each of parameter_files, in order), -p k:=v (parameters), -r from:=to
    (remappings)]`` (``deploy/node_command.py``).
    """

    name: str
    package: str
    executable: str
    machine: str
    # The node's absolute namespace; "" is the root namespace.
    namespace: str = ""
    arguments: tuple[str, ...] = ()
    ros_arguments: tuple[str, ...] = ()
    parameters: tuple[tuple[str, OptionValue], ...] = ()
    # Names of entries of ``files`` passed as ``--params-file``, in this order.
    parameter_files: tuple[str, ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[ShippedFile, ...] = ()
    # Prepended to the node's command on the machine (``prefix="gdb -ex run --args"``), split.
    prefix: tuple[str, ...] = ()
    respawn: bool = False
    respawn_delay: float = 0.0
    # How many times to respawn; -1 is forever.
    respawn_max_retries: int = -1
    # Stopping is ``ros2 launch``'s: SIGINT, SIGTERM after sigterm_timeout, SIGKILL after
    # sigkill_timeout more.
    sigterm_timeout: float = 5.0
    sigkill_timeout: float = 5.0
    # What reaches the robot's screen (prefixed lines), as launch's output aliases: "screen" and
    # "both" stream stdout and stderr, "log" only stderr. The machine's log files get everything.
    output: OutputMode = "both"
    # The label of the node's process (launch's ``exec_name``): its log files ``<label>.out`` and
    # ``files/<label>/``, `list`, exit lines. "" derives it from the name (see ``process_name``).
    exec_name: str = ""
    # Report the node's final command line as a stage line before it starts (launch's log_cmd).
    log_cmd: bool = False
    topics_in: tuple[TopicSpec, ...] = ()
    topics_out: tuple[TopicSpec, ...] = ()
    # Services and actions the node serves on its machine, called from the robot; and those served
    # on the robot that the node calls.
    services: tuple[ServiceSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    robot_services: tuple[ServiceSpec, ...] = ()
    robot_actions: tuple[ActionSpec, ...] = ()
    # Bridge the node's parameter services, so `ros2 param list/get/set` on the robot reach it.
    bridge_parameters: bool = True

    @property
    def process_name(self) -> str:
        """The label of the node's process: ``exec_name``, else the node's name, prefixed with its
        namespace's parts (``robot1.planner`` for ``/robot1/planner``) outside the root namespace."""
        if self.exec_name:
            return self.exec_name
        parts = [p for p in self.namespace.split("/") if p]
        return ".".join([*parts, self.name])


@dataclass(frozen=True, kw_only=True)
class BridgeSpec:
    """How robot and machines talk: Zenoh with explicit endpoints, private by default.

    ``protocol`` ``auto`` (the default) runs mutually authenticated TLS, with certificates of the
    deployment's own CA on both ends, to every machine that is remote or off loopback, and plain
    TCP to a Local machine on loopback (whose link is no more exposed than the DDS graphs at its
    two ends). ``tls`` and ``quic`` run mTLS to every machine; ``tcp`` is plaintext to every
    machine, an explicit opt-in that `up` warns about. ``port`` 0 lets the provider pick a free
    port. Multicast scouting stays off unless asked for, and shared memory is off so a measured
    link is the real network path.
    """

    port: int = 0
    protocol: Literal["auto", "tcp", "quic", "tls"] = "auto"
    scouting: bool = False
    shared_memory: bool = False
    # Set by the deployment in each bridge's run spec: the directory, on that bridge's machine,
    # holding ca.pem, bridge.pem and bridge.key (net/tls.py). A deployment's own value is unused.
    tls_dir: str = ""
    # The largest message a bridge forwards (bytes of CDR); larger ones are dropped and counted
    # (``dropped_oversize``) on the side that sees them first, and Zenoh's own limit matches.
    max_message_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            msg = f"bridge port {self.port} is out of range: use 1..65535, or 0 for any free port"
            raise ConfigError(msg)
        if not 1024 <= self.max_message_bytes <= 1 << 30:
            msg = (
                f"bridge max_message_bytes {self.max_message_bytes} is out of range: use 1024 .. "
                f"{1 << 30} (1 GiB), e.g. 67108864 for 64 MiB"
            )
            raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True)
class BridgeRunSpec:
    """What one bridge process runs: one side of the robot <-> machine link.

    ``outbound`` topics are read from this side's ROS graph and sent over Zenoh; ``inbound`` topics
    arrive over Zenoh and are published on this side's graph. The robot side's outbound topics are
    the nodes' ``topics_in``; a machine side's outbound topics are its nodes' ``topics_out``.
    """

    deployment: str
    side: Literal["robot", "machine"]
    machine: str
    listen: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    outbound: tuple[TopicSpec, ...] = ()
    inbound: tuple[TopicSpec, ...] = ()
    bridge: BridgeSpec = field(default_factory=BridgeSpec)
    distro: str = "jazzy"
    domain_id: int = 0
    graph: Literal["auto", "dds", "rclpy"] = "auto"
    stats_path: str = ""
    # The bridge's own ROS node name on its graph (``ros2 node list``); "" lets the graph pick.
    node_name: str = ""
    # On the robot side: the offloaded nodes (``/namespace/name``) whose bridged topics this bridge
    # stands in for, so the robot's ``ros2 node list`` shows them.
    proxy_nodes: tuple[str, ...] = ()
    # Which of ``proxy_nodes`` own each topic's endpoint on this graph, as (topic name, nodes), so
    # ``ros2 node info`` shows each offloaded node with its own topics: an inbound topic's
    # publisher belongs to the nodes that publish it on the far side (their ``topics_out``), an
    # outbound topic's subscription to those that subscribe to it there (their ``topics_in``).
    # A topic not listed belongs to the bridge's own node.
    inbound_owners: tuple[tuple[str, tuple[str, ...]], ...] = ()
    outbound_owners: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Services whose real server is on the far side: this bridge serves them on its graph and
    # forwards each call over Zenoh (``remote_services``); services whose real server is on this
    # side's graph: this bridge answers Zenoh queries by calling it (``local_services``). Actions
    # arrive here already expanded into services and topics (``ros/actions.py``).
    remote_services: tuple[ServiceSpec, ...] = ()
    local_services: tuple[ServiceSpec, ...] = ()
    # Which of ``proxy_nodes`` own each remote service's server on this graph (as for topics).
    service_owners: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The machine whose graph has each remote service's real server, as (service name, machine),
    # so a call that gets no answer is logged naming it; a service not listed is "the far side".
    service_machines: tuple[tuple[str, str], ...] = ()
    # Interface definitions the distro's stock types lack (the deployment's ``interfaces``).
    interfaces: tuple[InterfaceDef, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DeploymentSpec:
    """Everything `up` needs: machines, the nodes they run, how to bridge, which ROS distro."""

    name: str
    machines: tuple[MachineSpec, ...]
    nodes: tuple[NodeSpec, ...]
    bridge: BridgeSpec = field(default_factory=BridgeSpec)
    # Read when the spec is made (a launch file, a deployment file without `distro`), not at import.
    distro: str = field(default_factory=default_distro)
    # The robot's colcon workspace whose packages the nodes come from: only the packages the
    # offloaded nodes need (and their in-workspace dependencies) travel to remote machines, which
    # build them there. "" finds it from the overlay this process runs in (AMENT_PREFIX_PATH /
    # COLCON_PREFIX_PATH); a machine's own option ``workspace`` overrides it for that machine.
    workspace: str = ""
    # Each process's stdout and stderr files are rotated before they grow past this many bytes
    # (fogros_dist/rotating_log.py keeps 3 older parts of each: at most 4x this per stream).
    log_max_bytes: int = 10 * 1024 * 1024
    # Interface definitions the distro's stock types lack, found at plan time in the robot's
    # AMENT_PREFIX_PATH and the workspace (``ros/interfaces.py``), for every bridge.
    interfaces: tuple[InterfaceDef, ...] = ()

    def __post_init__(self) -> None:
        if not 4096 <= self.log_max_bytes <= 1 << 40:
            msg = (
                f"log_max_bytes {self.log_max_bytes} is out of range: use 4096 (4 KiB) .. "
                f"{1 << 40} (1 TiB), e.g. 10485760 for 10 MiB"
            )
            raise ConfigError(msg)

    def machine(self, name: str) -> MachineSpec:
        """Return the machine called ``name``; raise ConfigError naming the known ones."""
        for machine in self.machines:
            if machine.name == name:
                return machine
        known = ", ".join(m.name for m in self.machines) or "none"
        msg = f"node refers to machine {name!r}, which the deployment does not define (known: {known})"
        raise ConfigError(msg)

    def nodes_on(self, machine: str) -> tuple[NodeSpec, ...]:
        """The nodes placed on ``machine``."""
        return tuple(node for node in self.nodes if node.machine == machine)


@dataclass(frozen=True, kw_only=True)
class Host:
    """A provisioned machine: where it is and what its provider needs to find it again."""

    machine: str
    provider: str
    address: str
    workdir: str
    resource_id: str
    bridge_port: int
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProcessRecord:
    """A supervised process, recorded so `down` can stop it even after the supervisor crashed.

    ``start_ticks`` is the process start time from /proc, so a recycled PID is never signalled.
    """

    role: Literal["node", "bridge", "supervisor"]
    name: str
    machine: str
    pid: int
    pgid: int
    start_ticks: int
    stdout_path: str
    stderr_path: str
    argv: tuple[str, ...]


def to_json(value: Any) -> str:
    """Serialize a spec dataclass (possibly nested) to a JSON string."""
    return json.dumps(_encode(value), indent=2, sort_keys=True)


def from_json(cls: type[T], text: str | Mapping[str, Any]) -> T:
    """Build ``cls`` from JSON text or an already-parsed mapping, checking every field's type."""
    data = json.loads(text) if isinstance(text, str) else text
    return typing.cast(T, _decode(cls, data, cls.__name__))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return value


def _decode(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, Mapping):
            msg = f"{where}: expected an object, got {type(data).__name__}"
            raise ConfigError(msg)
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            msg = f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(names))})"
            raise ConfigError(msg)
        kwargs = {key: _decode(hints[key], value, f"{where}.{key}") for key, value in data.items()}
        try:
            return tp(**kwargs)
        except TypeError as err:
            msg = f"{where}: {err}"
            raise ConfigError(msg) from err
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list | tuple):
            msg = f"{where}: expected a list, got {type(data).__name__}"
            raise ConfigError(msg)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            msg = f"{where}: expected {len(args)} items, got {len(data)}"
            raise ConfigError(msg)
        return tuple(
            _decode(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, data, strict=True))
        )
    if origin is Literal:
        allowed = typing.get_args(tp)
        if data not in allowed:
            msg = f"{where}: {data!r} is not one of {', '.join(map(repr, allowed))}"
            raise ConfigError(msg)
        return data
    if origin is Union or origin is types.UnionType:
        options = typing.get_args(tp)
        present = [o for o in options if o is not type(None)]
        if len(present) == 1 and len(options) == 2:
            # An optional field: null, or the one type, whose own error names the inner field.
            return None if data is None else _decode(present[0], data, where)
        for option in options:
            try:
                return _decode(option, data, where)
            except ConfigError:
                continue
        msg = f"{where}: {data!r} does not fit {tp}"
        raise ConfigError(msg)
    if tp is type(None):
        if data is not None:
            msg = f"{where}: expected null, got {data!r}"
            raise ConfigError(msg)
        return None
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, float, bool):
        # bool is an int in Python: keep the two apart so `depth = true` is rejected.
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            msg = f"{where}: expected {tp.__name__}, got {data!r}"
            raise ConfigError(msg)
        return data
    msg = f"{where}: cannot decode type {tp}"
    raise ConfigError(msg)
