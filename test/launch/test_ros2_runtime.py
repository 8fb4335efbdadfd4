"""fogros_dist's runtime on ROS 2's own Python: without it, `ros2 launch` says the one command that
fixes it; ``ros2 run fogros_dist install_runtime`` puts it in the user's site-packages of the
interpreter ``ros2`` runs on, and nothing of .venv is involved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ros2_lane import ros2_argv, ros2_interpreter

pytestmark = pytest.mark.ros

_LAUNCH = """\
from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local

def generate_launch_description():
    return FogLaunchDescription([CloudNode(package="fogros_dist", executable="edge_detector",
        machine=Local("gpu"), topics_in=["/camera/image:sensor_msgs/msg/Image"])],
        deployment="no-runtime")
"""


def _python(env: dict[str, str], code: str, cwd: Path) -> str:
    # Not from the checkout's directory: `python -c` would import the checkout's fogros_dist.
    done = subprocess.run(
        [ros2_interpreter(), "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_runtime_lands_in_ros2s_interpreter_and_fogros_dist_comes_from_the_overlay(
    ros2_env: dict[str, str], tmp_path: Path
) -> None:
    # ros2 runs on ROS 2's interpreter, not on the one running these tests.
    assert Path(ros2_interpreter()).resolve() != Path(sys.executable).resolve()
    userbase = ros2_env["PYTHONUSERBASE"]
    for module in ("rosbags.typesys", "zenoh", "cyclonedds"):
        where = _python(ros2_env, f"import {module} as m; print(m.__file__)", tmp_path)
        assert where.startswith(userbase), (module, where)
    # catkin_pkg too, unless ROS 2's interpreter has it already (Ubuntu's ROS 2 depends on it):
    # pip then keeps that one, and never writes over the system's.
    where = _python(ros2_env, "import catkin_pkg as m; print(m.__file__)", tmp_path)
    system = _python(
        dict(ros2_env, PYTHONNOUSERSITE="1"),
        "import importlib.util as u; print(bool(u.find_spec('catkin_pkg')))",
        tmp_path,
    )
    assert where.startswith(userbase) or system == "True", where
    overlay = _python(ros2_env, "import fogros_dist; print(fogros_dist.__file__)", tmp_path)
    assert "/install/fogros_dist/" in overlay, overlay
    # The dry run shows what it would do: pip into the user site, the pins of the installed file.
    done = subprocess.run(
        ros2_argv("run", "fogros_dist", "install_runtime", "--dry-run"),
        env=ros2_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"into {ros2_interpreter()}" in done.stdout
    assert "-m pip install --disable-pip-version-check --user" in done.stdout
    assert "/share/fogros_dist/requirements.txt" in done.stdout
    assert "eclipse-zenoh==" in done.stdout


def test_without_the_runtime_ros2_launch_names_the_command_that_installs_it(
    ros2_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(ros2_env, PYTHONUSERBASE=str(tmp_path / "empty-userbase"), FOGROS_DIST_HOME=str(tmp_path))
    launch_file = tmp_path / "offload.launch.py"
    launch_file.write_text(_LAUNCH)
    done = subprocess.run(
        ros2_argv("launch", str(launch_file)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text
    assert "fogros_dist's runtime is not installed for " in text, text
    assert "run 'ros2 run fogros_dist install_runtime' once" in text, text
