"""Bad input through `ros2 launch`: a state home that is a file, a machine name that climbs out of
the deployment directory, ``domain_id=True``, a NUL in a node name. Each fails the launch with
one line naming it, no traceback, and creates nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ros2_lane import ros2

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")
pytest.importorskip("launch_ros")

LAUNCH = """\
from fogros_dist.launch import CloudNode, FogLaunchDescription
from fogros_dist.machines import Local
def generate_launch_description():
    return FogLaunchDescription([CloudNode(package='fogros_dist', executable='edge_detector',
        name={node!r}, machine=Local({machine!r}, domain_id={domain!r}),
        topics_in=['/camera/image:sensor_msgs/msg/Image'])], deployment='bad-input')
"""


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "case",
    [
        (True, "edges", "gpu", None, "is not usable: it is a file, not a directory: set FOGROS_DIST_HOME"),
        (False, "edges", "../../x", None, "machine name '../../x' is invalid"),
        (False, "edges", "gpu", True, "domain_id True is invalid: use a number 0..232"),
        (False, "ed\0ges", "gpu", None, "node name 'ed\\x00ges'"),
    ],
    ids=["home-is-a-file", "machine-climbs-out", "domain-id-bool", "nul-in-node-name"],
)
def test_bad_input_fails_the_launch_in_one_line(
    ros2_env: dict[str, str], tmp_path: Path, robot_domain: int, case: tuple[bool, str, str, object, str]
) -> None:
    home_is_a_file, node, machine, domain, expected = case
    work = tmp_path / "work"
    work.mkdir()
    launch = work / "bad.launch.py"
    launch.write_text(LAUNCH.format(node=node, machine=machine, domain=domain))
    home = tmp_path / "home"
    if home_is_a_file:
        home.write_text("")
    env = dict(ros2_env, FOGROS_DIST_HOME=str(home), ROS_DOMAIN_ID=str(robot_domain))
    before = _tree(tmp_path)
    result = subprocess.run(
        [ros2(), "launch", str(launch)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if expected in line]
    assert len(errors) == 1, text
    assert _tree(tmp_path) == before
