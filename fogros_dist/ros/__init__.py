"""ROS 2 graph ports: raw CDR in and out of a ROS 2 graph, with or without ROS 2 installed.

:func:`open_graph` picks an adapter: ``rclpy`` where ROS 2 is sourced, else ``dds`` (Cyclone DDS
speaking rmw_cyclonedds_cpp's wire format). Both implement :class:`~fogros_dist.ros.graph.RosGraph`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fogros_dist.errors import ConfigError, MissingDependency
from fogros_dist.ros.graph import RosGraph

__all__ = ["GraphKind", "open_graph"]

GraphKind = Literal["auto", "dds", "rclpy"]


def open_graph(
    kind: GraphKind = "auto",
    domain_id: int | None = None,
    *,
    distro: str = "jazzy",
    node_name: str = "",
    nodes: Sequence[str] = (),
) -> RosGraph:
    """Join a ROS 2 domain through the adapter ``kind``.

    Args:
        kind: ``rclpy`` (needs a sourced ROS 2), ``dds`` (needs the ``cyclonedds`` package), or
            ``auto``: rclpy when it imports, else dds.
        domain_id: the ROS domain; None reads ``$ROS_DOMAIN_ID`` (default 0).
        distro: the distribution whose message definitions the dds adapter uses.
        node_name: the graph's own node (``/ns/name`` or ``name``), shown by ``ros2 node list``;
            "" picks ``fogros_dist_<pid>_<n>``.
        nodes: further nodes (full names) the graph shows from the start; endpoints name their
            owners with ``nodes=`` (see :class:`~fogros_dist.ros.graph.RosGraph`).

    Returns:
        The graph; close it with ``close()``.

    Raises:
        ConfigError: ``kind``, ``domain_id``, ``distro`` or a node name is invalid.
        MissingDependency: the adapter asked for cannot be imported (with how to get it).
        BridgeError: the adapter could not join the domain.
    """
    if kind not in ("auto", "dds", "rclpy"):
        msg = f"graph kind {kind!r} is unknown: use 'auto', 'dds' or 'rclpy'"
        raise ConfigError(msg)
    if kind == "auto":
        try:
            import rclpy  # noqa: F401
        except ImportError:
            kind = "dds"
        else:
            kind = "rclpy"
    if kind == "rclpy":
        from fogros_dist.ros.rclpy_graph import RclpyGraph

        return RclpyGraph(domain_id, distro=distro, node_name=node_name or None, nodes=nodes)
    try:
        from fogros_dist.ros.dds import DdsGraph
    except ImportError as err:
        msg = (
            f"the dds graph adapter needs the 'cyclonedds' package ({err}): "
            "pip install cyclonedds==11.0.1, or source ROS 2 and use graph='rclpy'"
        )
        raise MissingDependency(msg) from err
    return DdsGraph(domain_id, distro=distro, node_name=node_name, nodes=nodes)
