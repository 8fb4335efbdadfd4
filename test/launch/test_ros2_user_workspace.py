"""A lab's own ROS 2 packages offloaded by the real ``ros2 launch``: an rclpy node of an
ament_python package that uses a message from an ament_cmake package of the same workspace,
marked with CloudNode for an SSH host (a namespace running OpenSSH, with this machine's ROS 2).

The user built and sourced the workspace on the robot; fogros_dist finds it from the overlay,
pushes only the two packages, builds them on the host with the host's colcon and ROS 2 (the
message package's generators included), sources the host's overlay and starts the node there.
The answer comes back through the bridge. The second launch builds nothing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from launch_helpers import LaunchRun
from ros2_lane import ros2_argv, ros2_interpreter, sourced
from sshlab import LabHost, SSHLab, ssh_options
from workspace_helpers import GREETING_PREFIX, colcon_build, greet_round_trip, ros_user_workspace

pytestmark = [pytest.mark.ros, pytest.mark.netns]

_LAUNCH = """\
from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Machine

def generate_launch_description():
    gpu = Machine("gpu", provider="ssh", **{options!r})
    return FogLaunchDescription([
        CloudNode(package="greeter_ros", executable="greeter", machine=gpu,
                  topics_in=["/greet/in:std_msgs/msg/String"],
                  topics_out=["/greet/out:std_msgs/msg/String"]),
    ], deployment="ros-ws")
"""


def _launch(env: dict[str, str], launch_file: Path) -> LaunchRun:
    import subprocess

    popen = subprocess.Popen(
        ros2_argv("launch", str(launch_file)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return LaunchRun(popen)


def _wait_up(run: LaunchRun, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while "deployment ros-ws is up" not in run.text():
        assert run.popen.poll() is None, run.text()
        assert time.monotonic() < deadline, run.text()
        time.sleep(0.5)


def test_ros2_launch_builds_the_users_packages_on_the_ssh_host_once(
    *,
    ros2_env: dict[str, str],
    ssh_lab: SSHLab,
    alpha: LabHost,
    known_hosts: Path,
    wheel_cache: Path,
    tmp_path: Path,
    robot_domain: int,
) -> None:
    workspace = ros_user_workspace(tmp_path / "lab_ws")
    install = colcon_build(workspace, env=ros2_env, python=ros2_interpreter())
    env = sourced(install / "setup.bash", ros2_env)
    env["FOGROS_DIST_HOME"] = str(tmp_path / "home")
    env["FOGROS_DIST_CACHE"] = str(wheel_cache)
    env["ROS_DOMAIN_ID"] = str(robot_domain)
    ros_setup = f"/opt/ros/{os.environ.get('ROS_DISTRO', 'jazzy')}/setup.bash"
    options = ssh_options(ssh_lab, alpha, known_hosts, ros_setup=ros_setup)
    launch_file = tmp_path / "offload.launch.py"
    launch_file.write_text(_LAUNCH.format(options=options))

    run = _launch(env, launch_file)
    try:
        _wait_up(run)
        assert greet_round_trip(robot_domain) == f"{GREETING_PREFIX}, robot"
    finally:
        code = run.stop()
    text = run.text()
    assert code == 0, text
    assert re.search(r"synced\s+gpu\s+workspace \(greet_msgs, greeter_ros\): ", text), text
    assert re.search(r"building\s+gpu\s+greet_msgs \(1/2\)", text), text
    assert re.search(r"building\s+gpu\s+greeter_ros \(2/2\)", text), text
    assert re.search(r"built\s+gpu\s+2 package\(s\) \(greet_msgs, greeter_ros\)", text), text
    assert "deployment ros-ws is down" in text

    run = _launch(env, launch_file)
    try:
        _wait_up(run)
        assert greet_round_trip(robot_domain, "again") == f"{GREETING_PREFIX}, again"
    finally:
        code = run.stop()
    text = run.text()
    assert code == 0, text
    assert re.search(r"build cached\s+gpu\s+2 package\(s\) unchanged", text), text
    assert "building" not in text
