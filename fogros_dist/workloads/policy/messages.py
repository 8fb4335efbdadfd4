"""The policy workload's ROS 2 interface: topics, standard message types, and their builders.

The robot publishes its state as ``sensor_msgs/msg/JointState`` on ``/joint_states`` (the XY
stage's two prismatic joints ``x`` and ``y``: position and velocity) and its target as
``geometry_msgs/msg/PoseStamped`` on ``/goal``; velocity commands come back as
``geometry_msgs/msg/TwistStamped`` on ``/cmd``. A command carries the header stamp of the joint
state that triggered it, so the robot (and a recorded bag) can pair every action with the
observation it answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import QosSpec, TopicSpec

__all__ = [
    "CMD_TOPIC",
    "GOAL",
    "GOAL_TOPIC",
    "JOINT_NAMES",
    "JOINT_STATE",
    "STATE_TOPIC",
    "TWIST_STAMPED",
    "PolicyMessages",
    "stamp_ns",
    "topic_specs",
]

JOINT_STATE = "sensor_msgs/msg/JointState"
GOAL = "geometry_msgs/msg/PoseStamped"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
STATE_TOPIC = "/joint_states"
GOAL_TOPIC = "/goal"
CMD_TOPIC = "/cmd"
JOINT_NAMES = ("x", "y")
# Control traffic is small and periodic; a short queue keeps a stalled link from replaying stale
# commands after it recovers.
_QOS = QosSpec(depth=10)


def topic_specs() -> tuple[tuple[TopicSpec, ...], tuple[TopicSpec, ...]]:
    """``(topics_in, topics_out)`` of the policy node, as the bridge carries them."""
    inputs = (
        TopicSpec(name=STATE_TOPIC, type=JOINT_STATE, qos=_QOS),
        TopicSpec(name=GOAL_TOPIC, type=GOAL, qos=_QOS),
    )
    return inputs, (TopicSpec(name=CMD_TOPIC, type=TWIST_STAMPED, qos=_QOS),)


def stamp_ns(header: Any) -> int:
    """A ``std_msgs/msg/Header``'s stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class PolicyMessages:
    """Builds and serializes the workload's messages for one ROS 2 distribution.

    Args:
        types: the distribution's message types.
    """

    def __init__(self, types: MessageTypes) -> None:
        self.types = types
        self._time = types.message_class("builtin_interfaces/msg/Time")
        self._header = types.message_class("std_msgs/msg/Header")
        self._joint_state = types.message_class(JOINT_STATE)
        self._pose_stamped = types.message_class(GOAL)
        self._pose = types.message_class("geometry_msgs/msg/Pose")
        self._point = types.message_class("geometry_msgs/msg/Point")
        self._quaternion = types.message_class("geometry_msgs/msg/Quaternion")
        self._twist_stamped = types.message_class(TWIST_STAMPED)
        self._twist = types.message_class("geometry_msgs/msg/Twist")
        self._vector = types.message_class("geometry_msgs/msg/Vector3")

    def header(self, *, stamp: int, frame_id: str) -> Any:
        """A ``std_msgs/msg/Header`` stamped ``stamp`` nanoseconds."""
        time = self._time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
        return self._header(stamp=time, frame_id=frame_id)

    def joint_state(self, *, stamp: int, position: Sequence[float], velocity: Sequence[float]) -> bytes:
        """CDR of the stage's ``JointState`` (joints ``x`` and ``y``)."""
        msg = self._joint_state(
            header=self.header(stamp=stamp, frame_id=""),
            name=list(JOINT_NAMES),
            position=np.asarray(position, dtype=np.float64),
            velocity=np.asarray(velocity, dtype=np.float64),
            effort=np.zeros(0, dtype=np.float64),
        )
        return self.types.serialize(JOINT_STATE, msg)

    def goal(self, *, stamp: int, x: float, y: float) -> bytes:
        """CDR of a ``PoseStamped`` goal in the stage's frame."""
        pose = self._pose(
            position=self._point(x=float(x), y=float(y), z=0.0),
            orientation=self._quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        )
        msg = self._pose_stamped(header=self.header(stamp=stamp, frame_id="stage"), pose=pose)
        return self.types.serialize(GOAL, msg)

    def command(self, *, header: Any, vx: float, vy: float) -> bytes:
        """CDR of a ``TwistStamped`` velocity command answering the message with ``header``."""
        twist = self._twist(
            linear=self._vector(x=float(vx), y=float(vy), z=0.0),
            angular=self._vector(x=0.0, y=0.0, z=0.0),
        )
        return self.types.serialize(TWIST_STAMPED, self._twist_stamped(header=header, twist=twist))
