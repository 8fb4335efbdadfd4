"""The grasp planner's ROS 2 messages: depth image and camera info in, grasps and qualities out.

Replies carry the request's header (stamp and frame), so a robot matches each answer to the
image it asked about. ``/grasps/quality`` (``std_msgs/Float32MultiArray``) has no header of its
own: its single dimension's label carries the request stamp as ``grasps stamp=<sec>.<nanosec>``
so the two reply topics can be joined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fogros_dist.nodes.images import image_array
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec
from fogros_dist.workloads.grasp.geometry import Grasps
from fogros_dist.workloads.grasp.scene import Camera

__all__ = [
    "CAMERA_INFO",
    "CAMERA_INFO_TOPIC",
    "DEPTH_ENCODINGS",
    "DEPTH_TOPIC",
    "GRASPS_TOPIC",
    "IMAGE",
    "POSE_ARRAY",
    "QUALITY",
    "QUALITY_TOPIC",
    "TOPICS_IN",
    "TOPICS_OUT",
    "GraspReply",
    "camera_from_info",
    "camera_info_msg",
    "depth_image_msg",
    "depth_meters",
    "grasp_reply_msgs",
    "parse_pose_array",
    "parse_quality",
    "stamp_ns",
]

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
QUALITY = "std_msgs/msg/Float32MultiArray"

DEPTH_TOPIC = "/camera/depth"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GRASPS_TOPIC = "/grasps"
QUALITY_TOPIC = "/grasps/quality"

# encoding -> meters per unit (REP 118: 32FC1 in meters, 16UC1 in millimeters).
DEPTH_ENCODINGS = {"32FC1": 1.0, "16UC1": 0.001}

_QOS = QosSpec(depth=5)
TOPICS_IN = (
    TopicSpec(name=CAMERA_INFO_TOPIC, type=CAMERA_INFO, qos=_QOS),
    TopicSpec(name=DEPTH_TOPIC, type=IMAGE, qos=_QOS),
)
TOPICS_OUT = (
    TopicSpec(name=GRASPS_TOPIC, type=POSE_ARRAY, qos=_QOS),
    TopicSpec(name=QUALITY_TOPIC, type=QUALITY, qos=_QOS),
)

_STAMP_LABEL = "grasps stamp="


@dataclass(frozen=True, kw_only=True, eq=False)
class GraspReply:
    """A decoded ``/grasps`` message.

    Attributes:
        stamp_ns: the request's header stamp in nanoseconds.
        frame_id: the request's frame.
        grasps: the grasps in image terms (widths 0: the pose does not carry them), best first.
        points: (N, 3) grasp centers in the camera frame.
    """

    stamp_ns: int
    frame_id: str
    grasps: Grasps
    points: npt.NDArray[np.float64]


def stamp_ns(header: Any) -> int:
    """A header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def camera_from_info(msg: Any) -> Camera:
    """The camera a ``CameraInfo`` describes.

    Raises:
        ValueError: its size or focal lengths are unusable (naming the values).
    """
    width, height = int(msg.width), int(msg.height)
    if width < 8 or height < 8:
        text = f"camera info size {width}x{height} is too small: publish the depth camera's real size"
        raise ValueError(text)
    k = [float(v) for v in msg.k]
    if len(k) != 9 or not (k[0] > 0 and k[4] > 0):
        text = f"camera info k={k} has no positive focal lengths: publish the calibrated intrinsics"
        raise ValueError(text)
    return Camera.from_k(k=k, width=width, height=height)


def depth_meters(msg: Any) -> npt.NDArray[np.float32]:
    """A depth ``Image`` as (H, W) float32 meters (0 where the sensor had no return).

    Raises:
        ValueError: the encoding is not a depth encoding, the data does not match the size, or no
            pixel holds a usable depth (all NaN, zero or negative).
    """
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        text = (
            f"depth image encoding {encoding!r} is not a depth encoding: publish 32FC1 (meters) "
            "or 16UC1 (millimeters)"
        )
        raise ValueError(text)
    raw = image_array(msg)
    depth = raw.astype(np.float32) * np.float32(DEPTH_ENCODINGS[encoding])
    usable = np.isfinite(depth) & (depth > 0)
    if not usable.any():
        values = "NaN" if np.isnan(depth).all() else "no positive depth"
        text = (
            f"depth image {depth.shape[1]}x{depth.shape[0]} holds {values} everywhere: check the depth camera"
        )
        raise ValueError(text)
    out: npt.NDArray[np.float32] = np.where(usable, depth, np.float32(0.0)).astype(np.float32)
    return out


def camera_info_msg(types: MessageTypes, *, camera: Camera, header: Any) -> Any:
    """A ``sensor_msgs/CameraInfo`` for ``camera`` (no distortion)."""
    info_cls = types.message_class(CAMERA_INFO)
    roi_cls = types.message_class("sensor_msgs/msg/RegionOfInterest")
    k = np.asarray(camera.k, dtype=np.float64)
    p = np.array([k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0])
    return info_cls(
        header=header,
        height=camera.height,
        width=camera.width,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=k,
        r=np.eye(3).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def depth_image_msg(
    types: MessageTypes, *, depth: npt.NDArray[np.floating[Any]], header: Any, encoding: str = "32FC1"
) -> Any:
    """A depth ``sensor_msgs/Image`` (32FC1 meters, or 16UC1 millimeters) of (H, W) meters.

    Raises:
        ValueError: ``encoding`` is not a depth encoding.
    """
    if encoding == "32FC1":
        pixels: npt.NDArray[Any] = np.ascontiguousarray(depth, dtype="<f4")
    elif encoding == "16UC1":
        pixels = np.ascontiguousarray(np.clip(np.rint(np.nan_to_num(depth) * 1000.0), 0, 65535), dtype="<u2")
    else:
        text = f"depth encoding {encoding!r} is not supported: use 32FC1 or 16UC1"
        raise ValueError(text)
    height, width = pixels.shape
    return types.message_class(IMAGE)(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * pixels.itemsize,
        data=pixels.view(np.uint8).reshape(-1),
    )


def grasp_reply_msgs(
    types: MessageTypes, *, header: Any, grasps: Grasps, qualities: npt.NDArray[np.float64], camera: Camera
) -> tuple[Any, Any]:
    """The ``/grasps`` PoseArray (camera frame, best first) and ``/grasps/quality`` replies."""
    pose_cls = types.message_class("geometry_msgs/msg/Pose")
    point_cls = types.message_class("geometry_msgs/msg/Point")
    quat_cls = types.message_class("geometry_msgs/msg/Quaternion")
    points = grasps.points(camera)
    quats = grasps.quaternions()
    poses = [
        pose_cls(
            position=point_cls(x=float(p[0]), y=float(p[1]), z=float(p[2])),
            orientation=quat_cls(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
        )
        for p, q in zip(points, quats, strict=True)
    ]
    pose_array = types.message_class(POSE_ARRAY)(header=header, poses=poses)
    n = len(grasps)
    stamp = f"{int(header.stamp.sec)}.{int(header.stamp.nanosec):09d}"
    layout = types.message_class("std_msgs/msg/MultiArrayLayout")(
        dim=[
            types.message_class("std_msgs/msg/MultiArrayDimension")(
                label=_STAMP_LABEL + stamp, size=n, stride=n
            )
        ],
        data_offset=0,
    )
    quality = types.message_class(QUALITY)(layout=layout, data=np.asarray(qualities, dtype=np.float32))
    return pose_array, quality


def parse_pose_array(msg: Any, *, camera: Camera) -> GraspReply:
    """Turn a ``/grasps`` PoseArray back into image-space grasps (for checking and drawing)."""
    n = len(msg.poses)
    points = np.array(
        [[p.position.x, p.position.y, p.position.z] for p in msg.poses], dtype=np.float64
    ).reshape(n, 3)
    # Rotation about the optical axis only: angle = 2 * atan2(z, w), folded into [0, pi).
    angles = np.array(
        [
            math.fmod(2.0 * math.atan2(p.orientation.z, p.orientation.w) + 4 * math.pi, math.pi)
            for p in msg.poses
        ]
    ).reshape(n)
    centers = camera.project(points) if n else np.zeros((0, 2))
    grasps = Grasps(centers=centers, angles=angles, depths=points[:, 2].copy(), widths=np.zeros(n))
    return GraspReply(
        stamp_ns=stamp_ns(msg.header), frame_id=str(msg.header.frame_id), grasps=grasps, points=points
    )


def parse_quality(msg: Any) -> tuple[int | None, npt.NDArray[np.float32]]:
    """``(request stamp ns or None, qualities)`` of a ``/grasps/quality`` message."""
    stamp: int | None = None
    if msg.layout.dim:
        label = str(msg.layout.dim[0].label)
        if label.startswith(_STAMP_LABEL):
            sec, _, nanosec = label[len(_STAMP_LABEL) :].partition(".")
            try:
                stamp = int(sec) * 1_000_000_000 + int(nanosec)
            except ValueError:
                stamp = None
    return stamp, np.asarray(msg.data, dtype=np.float32)
