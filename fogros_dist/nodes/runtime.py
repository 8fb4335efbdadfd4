"""What every fogros_dist node shares: graph set-up, signal handling, one-line errors.

A node is a ``setup(ctx)`` function that declares its publishers and subscriptions on ``ctx.graph``;
:func:`run_node` opens the graph (rclpy where ROS 2 is installed, else Cyclone DDS), runs until
SIGINT/SIGTERM, and closes everything. Callbacks that raise are logged and the node keeps serving.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fogros_dist.errors import FogError
from fogros_dist.logs import module_logger
from fogros_dist.nodes.ros_args import RosArgs, parse_ros_args
from fogros_dist.ros.graph import CdrCallback, RosGraph
from fogros_dist.spec import default_distro

__all__ = ["NodeContext", "guarded", "run_node"]


@dataclass(frozen=True, kw_only=True)
class NodeContext:
    """What a node's setup function gets."""

    name: str
    graph: RosGraph
    args: RosArgs
    distro: str
    log: logging.Logger


def guarded(log: logging.Logger, topic: str, callback: CdrCallback) -> CdrCallback:
    """Wrap a subscription callback so bad input is logged (naming the topic) and never fatal."""

    def safe(cdr: bytes) -> None:
        try:
            callback(cdr)
        except (ValueError, FogError) as err:
            log.warning("dropped a message on %s: %s", topic, err)
        except Exception:
            log.exception("callback for %s failed; still serving", topic)

    return safe


def run_node(
    default_name: str, setup: Callable[[NodeContext], None], argv: Sequence[str] | None = None
) -> int:
    """Run a node until SIGINT/SIGTERM; return the process exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    try:
        ros_args = parse_ros_args(args_in)
    except FogError as err:
        print(f"{default_name}: error: {err}", file=sys.stderr)
        return 2
    name = ros_args.node_name or default_name
    log = module_logger(name)
    distro = default_distro()
    from fogros_dist.ros import open_graph
    from fogros_dist.ros.node_names import full_node_name

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    graph_kind = os.environ.get("FOGROS_DIST_GRAPH", "auto")
    try:
        # Under its own name on the graph (`ros2 node list`), as an rclpy node's __node/__ns rename it.
        full_name = full_node_name(namespace=ros_args.remappings.get("__ns", "/"), name=name)
        graph = open_graph(graph_kind, distro=distro, node_name=full_name)  # type: ignore[arg-type]
    except FogError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 1
    try:
        setup(NodeContext(name=name, graph=graph, args=ros_args, distro=distro, log=log))
        log.info("ready on %s graph", type(graph).__name__)
        stop.wait()
    except FogError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 1
    finally:
        graph.close()
    log.info("stopped")
    return 0
