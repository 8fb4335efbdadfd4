"""A lab's own demonstrations, written with rosbags alone (imported by name, as policy_test_helpers).

The lab's robot is a 2-D point mass behind a velocity loop, returning to its home position under
a PD controller: its driver publishes ``sensor_msgs/msg/JointState`` on ``/my_robot/state`` at
50 Hz (joints ``x`` and ``y``, position and velocity) and the controller sends
``geometry_msgs/msg/Twist`` (no header) on ``/my_robot/cmd`` at 20 Hz from the latest state.
Nothing here uses fogros_dist, so the bags are what any ROS 2 recorder could have written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STATE_TOPIC = "/my_robot/state"
CMD_TOPIC = "/my_robot/cmd"
HOME = np.array([0.3, -0.2])
_NS = 1_000_000_000
_SIM_DT = 0.01  # 100 Hz physics; the state every 2 steps (50 Hz), a command every 5 (20 Hz)
_TAU = 0.15  # s, the velocity loop's lag
_KP, _KD, _LIMIT = 2.0, 0.4, 0.8
_STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def write_lab_bag(
    path: Path,
    *,
    seed: int,
    seconds: float = 4.0,
    storage: str = "mcap",
    nan_at_state: int | None = None,
) -> None:
    """One demonstration from a random start; ``nan_at_state``: that state's velocity[1] is NaN."""
    store = get_typestore(Stores.ROS2_JAZZY)
    joint_state = store.types["sensor_msgs/msg/JointState"]
    header = store.types["std_msgs/msg/Header"]
    stamp_type = store.types["builtin_interfaces/msg/Time"]
    twist = store.types["geometry_msgs/msg/Twist"]
    vector = store.types["geometry_msgs/msg/Vector3"]
    rng = np.random.default_rng(seed)
    position = rng.uniform(-1.0, 1.0, 2)
    velocity = np.zeros(2)
    command = np.zeros(2)
    start_ns = (1_750_000_000 + 60 * seed) * _NS
    with Writer(path, version=9, storage_plugin=_STORAGE[storage]) as writer:
        state_conn = writer.add_connection(STATE_TOPIC, "sensor_msgs/msg/JointState", typestore=store)
        cmd_conn = writer.add_connection(CMD_TOPIC, "geometry_msgs/msg/Twist", typestore=store)
        states = 0
        for step in range(round(seconds / _SIM_DT)):
            now_ns = start_ns + round(step * _SIM_DT * _NS)
            if step % 2 == 0:
                shown_velocity = velocity.copy()
                if states == nan_at_state:
                    shown_velocity[1] = float("nan")
                msg = joint_state(
                    header=header(stamp=stamp_type(sec=now_ns // _NS, nanosec=now_ns % _NS), frame_id=""),
                    name=["x", "y"],
                    position=position.copy(),
                    velocity=shown_velocity,
                    effort=np.zeros(0),
                )
                cdr = store.serialize_cdr(msg, "sensor_msgs/msg/JointState")
                writer.write(state_conn, now_ns + int(rng.integers(200_000, 1_000_000)), cdr)
                states += 1
                seen_position, seen_velocity = position.copy(), velocity.copy()
            if step % 5 == 0:
                # The PD law on the latest published state, a little noise, saturated.
                raw = _KP * (HOME - seen_position) - _KD * seen_velocity + rng.normal(0.0, 0.02, 2)
                command = np.clip(raw, -_LIMIT, _LIMIT)
                cmd = twist(
                    linear=vector(x=float(command[0]), y=float(command[1]), z=0.0),
                    angular=vector(x=0.0, y=0.0, z=0.0),
                )
                cdr = store.serialize_cdr(cmd, "geometry_msgs/msg/Twist")
                writer.write(cmd_conn, now_ns + int(rng.integers(1_500_000, 3_000_000)), cdr)
            alpha = 1.0 - np.exp(-_SIM_DT / _TAU)
            previous = velocity
            velocity = previous + alpha * (command - previous) + rng.normal(0.0, 0.002, 2)
            position = position + 0.5 * (previous + velocity) * _SIM_DT


def write_lab_bags(folder: Path, *, count: int, seconds: float = 4.0) -> list[Path]:
    """``count`` bags ``lab_00`` ... under ``folder``, alternating mcap and sqlite3 storage."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"lab_{i:02d}"
        write_lab_bag(path, seed=i, seconds=seconds, storage="mcap" if i % 2 == 0 else "sqlite3")
        paths.append(path)
    return paths


def snapshot(folder: Path) -> dict[str, tuple[int, int, bool]]:
    """``{relative path: (size, mtime ns, is dir)}`` of everything under ``folder``, itself too."""
    out = {".": (0, folder.stat().st_mtime_ns, True)}
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(root) / name
            info = path.lstat()
            is_dir = path.is_dir()
            out[str(path.relative_to(folder))] = (0 if is_dir else info.st_size, info.st_mtime_ns, is_dir)
    return out
