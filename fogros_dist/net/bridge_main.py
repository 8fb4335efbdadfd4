"""Bridge process entry point: ``python -m fogros_dist.net.bridge_main --spec FILE.json``.

``FILE.json`` holds a :class:`~fogros_dist.spec.BridgeRunSpec` (as written by
:func:`fogros_dist.spec.to_json`). With ``spec.bridge.tls_dir`` set, the process first checks its
TLS credentials there and makes its private key 0600 (an upload leaves it with the host's umask;
:func:`fogros_dist.net.tls.check_credentials`); a plaintext TCP listener on an address other than
loopback is logged as a warning. The interface definitions in ``spec.interfaces`` are registered
into the message types the graph and the bridge share, so the deployment's own types are bridged
and validated like stock ones; ``graph = "auto"`` takes rclpy where it imports and every bridged
type is built in the sourced ROS 2, else the dds adapter, which needs only those definitions.
The process joins the ROS graph, opens the Zenoh session, runs
the bridge and its services (:mod:`fogros_dist.net.service_bridge`, counted in the stats'
``services`` section) until SIGTERM or SIGINT (on its graph as node ``spec.node_name``, with a node for each
of ``spec.proxy_nodes``), then closes everything (writing the final stats) and exits 0.

Exit codes: 0 after a clean stop; 2 when the spec file is missing or invalid; 1 when the bridge
cannot start (graph, Zenoh or peer failure). Errors are one line on stderr, the traceback only
with ``--debug``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from fogros_dist.errors import BridgeError, ConfigError, FogError, MissingDependency
from fogros_dist.logs import module_logger
from fogros_dist.net.tcp_congestion import congestion_control_warning
from fogros_dist.net.zenoh_config import is_loopback
from fogros_dist.spec import BridgeRunSpec, from_json

if TYPE_CHECKING:
    from fogros_dist.net.bridge import Bridge
    from fogros_dist.net.service_bridge import ServiceBridge
    from fogros_dist.ros.graph import RosGraph
    from fogros_dist.ros.types import MessageTypes

__all__ = ["load_spec", "main", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SPEC = 2

_log = module_logger("fogros_dist.bridge")


def load_spec(path: str) -> BridgeRunSpec:
    """Read and check a bridge spec file.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON or not a BridgeRunSpec.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        msg = f"bridge spec file {path!r} does not exist: pass the JSON file the deployment wrote"
        raise ConfigError(msg) from None
    except OSError as err:
        msg = f"bridge spec file {path!r} is unreadable ({err.strerror}): check its permissions"
        raise ConfigError(msg) from None
    try:
        data = json.loads(text)
    except ValueError as err:
        msg = f"bridge spec file {path!r} is not JSON ({err}): write it with fogros_dist.spec.to_json"
        raise ConfigError(msg) from None
    try:
        return from_json(BridgeRunSpec, data)
    except ConfigError as err:
        msg = f"bridge spec file {path!r} is invalid: {err}"
        raise ConfigError(msg) from None


def run(spec: BridgeRunSpec, *, stop: threading.Event, peer_timeout: float = 20.0) -> None:
    """Run one bridge side until ``stop`` is set, then close it cleanly.

    Args:
        spec: the bridge to run.
        stop: set it (e.g. from a signal handler) to stop the bridge.
        peer_timeout: seconds a side with ``connect`` endpoints waits for its peer bridges.

    Raises:
        FogError: the graph, the Zenoh session or the bridge could not start.
    """
    import zenoh

    from fogros_dist.net.bridge import Bridge
    from fogros_dist.net.service_bridge import ServiceBridge
    from fogros_dist.net.tls import check_credentials
    from fogros_dist.net.zenoh_config import config_for, plaintext_exposed
    from fogros_dist.ros import open_graph
    from fogros_dist.ros.interfaces import register_interfaces
    from fogros_dist.ros.types import MessageTypes

    if spec.bridge.tls_dir:
        check_credentials(spec.bridge.tls_dir)
    for endpoint in spec.listen:
        if plaintext_exposed(endpoint):
            _log.warning(
                "listening on %s in plaintext: anyone who reaches it can read and inject this "
                "bridge's topics (bridge protocol 'tcp'; leave it unset, or use 'tls', for mTLS)",
                endpoint,
            )
    config = config_for(spec)
    # The deployment's own interface definitions, so its custom types are bridged and validated
    # like stock ones (the graph resolves and the bridge validates with these same types).
    types = MessageTypes(spec.distro)
    register_interfaces(types, spec.interfaces)
    # The bridge's own node and the offloaded nodes it stands in for show in `ros2 node list`.
    if _graph_kind(spec) == "dds":
        graph: RosGraph = _dds_graph(spec, types)
    else:
        graph = open_graph(
            "rclpy", spec.domain_id, distro=spec.distro, node_name=spec.node_name, nodes=spec.proxy_nodes
        )
    try:
        try:
            session = zenoh.open(config)
        except zenoh.ZError as err:
            endpoints = ", ".join((*spec.listen, *spec.connect))
            msg = (
                f"Zenoh session for the {spec.side} bridge did not open ({err}): check endpoints {endpoints}"
            )
            raise BridgeError(msg) from err
        try:
            bridge = Bridge(spec=spec, graph=graph, session=session, types=types)
            services = ServiceBridge(spec=spec, graph=graph, session=session)
            _serve(spec, bridge, services, stop=stop, peer_timeout=peer_timeout)
        finally:
            session.close()  # type: ignore[no-untyped-call]
    finally:
        graph.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the bridge, and map failures to exit codes (see the module doc)."""
    parser = argparse.ArgumentParser(
        prog="python -m fogros_dist.net.bridge_main",
        description="Run one side of a fogros_dist robot <-> machine Zenoh bridge.",
    )
    parser.add_argument("--spec", required=True, help="JSON file holding a BridgeRunSpec")
    parser.add_argument(
        "--peer-timeout",
        type=float,
        default=20.0,
        help="seconds a side with connect endpoints waits for its peer bridges (default 20)",
    )
    parser.add_argument("--debug", action="store_true", help="log at debug level, with tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        spec = load_spec(args.spec)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.debug("received signal %d", signum)
        stop.set()

    # Installed before the graph and session open, so a stop during start-up is not lost.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(spec, stop=stop, peer_timeout=args.peer_timeout)
    except FogError as err:
        _log.debug("bridge failed", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC if isinstance(err, ConfigError) else EXIT_FAILED
    return EXIT_OK


def _graph_kind(spec: BridgeRunSpec) -> str:
    """``dds`` or ``rclpy``: ``auto`` takes rclpy only where it imports and the sourced ROS 2
    has every bridged type built (a type carried in ``spec.interfaces`` for a package the robot
    never built exists only in the DDS adapter's types)."""
    if spec.graph != "auto":
        return spec.graph
    try:
        from rosidl_runtime_py.utilities import get_interface
    except ImportError:
        return "dds"
    names = [t.type for t in (*spec.outbound, *spec.inbound) if t.type is not None]
    names += [s.type for s in (*spec.remote_services, *spec.local_services) if s.type is not None]
    for name in dict.fromkeys(names):
        try:
            get_interface(name)
        except Exception as err:  # ModuleNotFoundError, AttributeError, ValueError
            _log.info(
                "graph 'auto' uses the dds adapter: %s is not built in the sourced ROS 2 (%s)", name, err
            )
            return "dds"
    return "rclpy"


def _dds_graph(spec: BridgeRunSpec, types: MessageTypes) -> RosGraph:
    try:
        from fogros_dist.ros.dds import DdsGraph
    except ImportError as err:
        msg = (
            f"the dds graph adapter needs the 'cyclonedds' package ({err}): "
            "pip install cyclonedds==11.0.1, or source ROS 2 and use graph='rclpy'"
        )
        raise MissingDependency(msg) from err
    return DdsGraph(
        spec.domain_id, distro=spec.distro, types=types, node_name=spec.node_name, nodes=spec.proxy_nodes
    )


def _serve(
    spec: BridgeRunSpec,
    bridge: Bridge,
    services: ServiceBridge,
    *,
    stop: threading.Event,
    peer_timeout: float,
) -> None:
    """Start the services and the topics, wait for ``stop``, close both."""
    bridge.stats.set_services_source(services.snapshot)
    # A stop while the bridge still waits for its peers must not wait out peer_timeout.
    threading.Thread(target=_close_if_starting, args=(bridge, stop), daemon=True).start()
    try:
        # Services first: the bridge's readiness token then means they are served too.
        services.start()
        try:
            bridge.start(peer_timeout=peer_timeout)
        except BridgeError:
            if stop.is_set():
                return  # stopped during start-up: a clean stop, not a failure
            raise
        print(_ready_line(spec), flush=True)
        warning = congestion_control_warning() if _leaves_this_host(spec) else ""
        if warning:
            _log.warning("%s", warning)
        # Everything made during start-up (typestores, routes, Zenoh and DDS objects: ~50k) lives
        # as long as the bridge: frozen, a full collection no longer walks it, which measured
        # 27-50 ms per collection on a loaded 2-CPU host, a pause every stream would feel.
        gc.collect()
        gc.freeze()
        stop.wait()
        _log.info("stopping the %s bridge", spec.side)
    finally:
        services.close()  # first: the topic bridge's final stats file then has its counts
        bridge.close()


def _leaves_this_host(spec: BridgeRunSpec) -> bool:
    """Whether any of the bridge's Zenoh endpoints is off loopback (a link TCP's congestion
    control can pause; loopback never queues)."""
    hosts = [
        endpoint.split("/", 1)[-1].split("#", 1)[0].rsplit(":", 1)[0]
        for endpoint in (*spec.listen, *spec.connect)
    ]
    return any(not is_loopback(host) for host in hosts)


def _close_if_starting(bridge: Bridge, stop: threading.Event) -> None:
    stop.wait()
    if not bridge.ready:
        bridge.close()


def _ready_line(spec: BridgeRunSpec) -> str:
    listen = ",".join(spec.listen) or "-"
    connect = ",".join(spec.connect) or "-"
    out = ",".join(t.name for t in spec.outbound)
    into = ",".join(t.name for t in spec.inbound)
    topics = f"topics out=[{out}] in=[{into}]"
    if spec.remote_services or spec.local_services:
        remote = ",".join(s.name for s in spec.remote_services)
        local = ",".join(s.name for s in spec.local_services)
        topics += f" services remote=[{remote}] local=[{local}]"
    return f"bridge ready: {spec.side} {spec.machine} listen={listen} connect={connect} {topics}"


if __name__ == "__main__":
    sys.exit(main())
