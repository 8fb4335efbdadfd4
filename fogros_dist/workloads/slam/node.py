"""slam_node: LiDAR odometry and mapping (KISS-ICP) as a ROS 2 node.

Subscribes to ``/points`` (sensor_msgs/msg/PointCloud2); for every scan publishes
nav_msgs/msg/Odometry on ``/odom`` (the cloud's stamp, frames ``odom`` -> ``base_link``, twist from
the last two scans) and every ``map_every`` scans the global map on ``/map`` (PointCloud2 in
``odom``, voxel-downsampled and capped at ``max_map_points``). Remap with ``--ros-args -r``.

Parameters (``-p name:=value``): ``map_every`` (10), ``map_voxel`` (0.25 m), ``max_map_points``
(100000), ``max_range`` (100 m), ``min_range`` (0.5 m), ``voxel_size`` (max_range / 100),
``deskew`` (true; needs a per-point time field), ``threads`` (0 = every core), ``odom_frame``
(odom), ``base_frame`` (base_link).

Bad input (an empty cloud, one whose points are all NaN, one without x/y/z) is logged as a
warning naming the topic and the value, and dropped; the node keeps serving. A stamp older than
the previous scan's (a bag restarted, a new benchmark run) starts a new trajectory.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from fogros_dist.errors import ConfigError
from fogros_dist.nodes.runtime import NodeContext, guarded, run_node
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec
from fogros_dist.workloads.slam.odometry import LidarOdometry, OdometryConfig
from fogros_dist.workloads.slam.pointcloud import POINTCLOUD2, make_cloud, make_header, read_points, stamp_ns

__all__ = [
    "ODOMETRY",
    "NodeSettings",
    "main",
    "node_settings",
    "odometry_message",
    "quaternion_from_rotation",
    "setup",
]

ODOMETRY = "nav_msgs/msg/Odometry"

T = TypeVar("T")


def _param(ctx: NodeContext, name: str, default: T, parse: Callable[[str], T], rule: str) -> T:
    text = ctx.args.parameters.get(name)
    if text is None:
        return default
    try:
        return parse(text)
    except ValueError:
        msg = f"parameter {name}={text!r} is invalid: use {rule} (-p {name}:=...)"
        raise ConfigError(msg) from None


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def quaternion_from_rotation(rotation: npt.NDArray[np.float64]) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method: stable for every angle)."""
    r = rotation
    trace = float(r[0, 0] + r[1, 1] + r[2, 2])
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        w, x, y, z = (r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        w, x, y, z = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        w, x, y, z = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    return float(x / norm), float(y / norm), float(z / norm), float(w / norm)


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """slam_node's parameters."""

    odometry: OdometryConfig
    map_every: int = 10
    odom_frame: str = "odom"
    base_frame: str = "base_link"


def node_settings(ctx: NodeContext) -> NodeSettings:
    """Read the node's parameters (see the module docstring).

    Raises:
        ConfigError: a parameter is invalid; the message names it and the accepted values.
    """
    map_every = _param(ctx, "map_every", 10, int, "a whole number of scans (0 switches the map off)")
    if map_every < 0:
        msg = f"parameter map_every={map_every} is negative: use 0 (no map) or a number of scans"
        raise ConfigError(msg)
    voxel_given = bool(ctx.args.parameters.get("voxel_size"))
    return NodeSettings(
        odometry=OdometryConfig(
            max_range_m=_param(ctx, "max_range", 100.0, float, "metres"),
            min_range_m=_param(ctx, "min_range", 0.5, float, "metres"),
            voxel_size_m=_param(ctx, "voxel_size", 0.0, float, "metres") if voxel_given else None,
            deskew=_param(ctx, "deskew", True, _parse_bool, "true or false"),
            threads=_param(ctx, "threads", 0, int, "a thread count (0 = every core)"),
            map_voxel_m=_param(ctx, "map_voxel", 0.25, float, "metres"),
            max_map_points=_param(ctx, "max_map_points", 100_000, int, "a point count"),
        ),
        map_every=map_every,
        odom_frame=_param(ctx, "odom_frame", "odom", str, "a frame id"),
        base_frame=_param(ctx, "base_frame", "base_link", str, "a frame id"),
    )


def odometry_message(
    types: MessageTypes,
    *,
    pose: npt.NDArray[np.float64],
    linear: npt.NDArray[np.float64],
    angular: npt.NDArray[np.float64],
    stamp: int,
    odom_frame: str,
    base_frame: str,
) -> Any:
    """A nav_msgs/msg/Odometry for a 4x4 pose and a twist in the child frame (no covariances)."""
    cls = {name.rsplit("/", 1)[-1]: types.message_class(name) for name in _GEOMETRY}
    qx, qy, qz, qw = quaternion_from_rotation(pose[:3, :3])
    zero_covariance = np.zeros(36, dtype=np.float64)

    def vector3(values: npt.NDArray[np.float64]) -> Any:
        return cls["Vector3"](x=float(values[0]), y=float(values[1]), z=float(values[2]))

    return types.message_class(ODOMETRY)(
        header=make_header(types, stamp=stamp, frame_id=odom_frame),
        child_frame_id=base_frame,
        pose=cls["PoseWithCovariance"](
            pose=cls["Pose"](
                position=cls["Point"](x=float(pose[0, 3]), y=float(pose[1, 3]), z=float(pose[2, 3])),
                orientation=cls["Quaternion"](x=qx, y=qy, z=qz, w=qw),
            ),
            covariance=zero_covariance,
        ),
        twist=cls["TwistWithCovariance"](
            twist=cls["Twist"](linear=vector3(linear), angular=vector3(angular)),
            covariance=zero_covariance,
        ),
    )


_GEOMETRY = (
    "geometry_msgs/msg/PoseWithCovariance",
    "geometry_msgs/msg/TwistWithCovariance",
    "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/Point",
    "geometry_msgs/msg/Quaternion",
    "geometry_msgs/msg/Vector3",
)


class _SlamServer:
    """The node's state: the odometry, its publishers, the last stamp seen."""

    def __init__(self, ctx: NodeContext, settings: NodeSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.types = MessageTypes(ctx.distro)
        self.in_topic = ctx.args.topic("/points")
        self.odom_topic = ctx.args.topic("/odom")
        self.map_topic = ctx.args.topic("/map")
        self.odom_pub = ctx.graph.publisher(
            TopicSpec(name=self.odom_topic, type=ODOMETRY, qos=QosSpec(depth=10))
        )
        self.map_pub = ctx.graph.publisher(
            TopicSpec(name=self.map_topic, type=POINTCLOUD2, qos=QosSpec(depth=1))
        )
        self.slam = LidarOdometry(config=settings.odometry)
        self.lock = threading.Lock()  # adapters may deliver on their own threads; KISS-ICP is not reentrant
        self.last_stamp: int | None = None

    def on_points(self, cdr: bytes) -> None:
        """Register one scan; publish its odometry (and the map every ``map_every`` scans).

        Raises:
            ValueError: the cloud is empty, all-NaN, lacks x/y/z, repeats a stamp, or has too few
                usable points (``guarded`` logs it as a warning naming the topic).
        """
        msg = self.types.deserialize(POINTCLOUD2, cdr)
        cloud = read_points(msg)
        if cloud.total == 0:
            text = (
                f"PointCloud2 is empty (width {int(msg.width)} x height {int(msg.height)}): "
                "publish at least one point"
            )
            raise ValueError(text)
        if cloud.xyz.shape[0] == 0:
            text = f"PointCloud2 has no finite point: all {cloud.total} points have NaN or infinite x/y/z"
            raise ValueError(text)
        stamp = stamp_ns(msg.header)
        settings = self.settings
        with self.lock:
            if self.last_stamp is not None and stamp < self.last_stamp:
                self.ctx.log.warning(
                    "stamp on %s went back (%d ns < %d ns): starting a new trajectory",
                    self.in_topic,
                    stamp,
                    self.last_stamp,
                )
                self.slam.reset()
            elif stamp == self.last_stamp:
                text = f"PointCloud2 stamp {stamp} ns repeats the previous scan's: publish each scan once"
                raise ValueError(text)
            times = cloud.times if settings.odometry.deskew else None
            pose = self.slam.register(cloud.xyz, stamp_ns=stamp, times=times)
            linear, angular = self.slam.velocity()
            self.last_stamp = stamp
            due = settings.map_every > 0 and len(self.slam) % settings.map_every == 0
            map_points = self.slam.global_map() if due else None
        reply = odometry_message(
            self.types,
            pose=pose,
            linear=linear,
            angular=angular,
            stamp=stamp,
            odom_frame=settings.odom_frame,
            base_frame=settings.base_frame,
        )
        self.odom_pub.publish(self.types.serialize(ODOMETRY, reply))
        if map_points is not None:
            cloud_msg = make_cloud(map_points, types=self.types, stamp=stamp, frame_id=settings.odom_frame)
            self.map_pub.publish(self.types.serialize(POINTCLOUD2, cloud_msg))


def setup(ctx: NodeContext) -> None:
    """Declare the node's publishers and subscription.

    Raises:
        ConfigError: a parameter is invalid.
        MissingDependency: kiss-icp is not installed.
    """
    settings = node_settings(ctx)
    server = _SlamServer(ctx, settings)
    ctx.graph.subscribe(
        TopicSpec(name=server.in_topic, type=POINTCLOUD2, qos=QosSpec(depth=5)),
        guarded(ctx.log, server.in_topic, server.on_points),
    )
    ctx.log.info(
        "odometry of %s -> %s, map every %d scans -> %s (voxel %.2f m, range %.1f..%.1f m)",
        server.in_topic,
        server.odom_topic,
        settings.map_every,
        server.map_topic,
        settings.odometry.local_voxel_m,
        settings.odometry.min_range_m,
        settings.odometry.max_range_m,
    )


def main() -> int:
    """Console-script entry point."""
    return run_node("slam_node", setup)


if __name__ == "__main__":
    sys.exit(main())
