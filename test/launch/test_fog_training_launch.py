"""``FogTraining`` in a launch description, run by ROS 2's own LaunchService: the training CLI runs
as launch's process (two Local machines), its lines reach the screen, it ends with the model and
its metrics, launch exits 0; bad arguments are one line when the launch description is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
# ROS 2's launch (a bare "launch" would also find this test directory as a namespace package).
pytest.importorskip("launch.launch_description")
pytest.importorskip("torch")

SMALL = [
    "--scenes", "24", "--eval-scenes", "8", "--grasps-per-scene", "16", "--epochs", "1",
    "--plan-images", "0", "--batch-size", "64", "--json",
]  # fmt: skip

# Run in a child: LaunchService installs signal handlers and owns its event loop.
_LAUNCH = """
import sys
from launch import LaunchDescription, LaunchService
from fogros_dist.launch import FogTraining

service = LaunchService()
training = FogTraining(workload="grasp", nodes=2, target="heldout_accuracy=0.5", options=sys.argv[1:])
service.include_launch_description(LaunchDescription([training]))
sys.exit(service.run())
"""


def test_fog_training_trains_on_two_local_machines_under_launch(tmp_path: Path) -> None:
    env = dict(
        os.environ, FOGROS_DIST_HOME=str(tmp_path / "home"), FOGROS_DIST_MODELS=str(tmp_path / "models")
    )
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *SMALL],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    # launch's own prefix on the process's lines, the fleet's prefixes inside them.
    assert "[fog_training_grasp-1]" in out
    assert "[train:local-0:0] train: epoch 1/1" in out
    assert "[train:local-1:1]" in out
    assert (tmp_path / "models" / "grasp.pt").stat().st_size > 10_000
    assert '"world_size": 2' in out, out[-2000:]  # the CLI's --json metrics, through launch
    assert "train: time to heldout_accuracy >= 0.5: " in out, out[-2000:]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"workload": "nope", "nodes": 2}, "workload 'nope' is unknown"),
        ({"workload": "grasp"}, "needs nodes="),
        ({"workload": "grasp", "nodes": "3:2"}, "MIN 3 is above MAX 2"),
        ({"workload": "grasp", "nodes": 2, "serve_to": "no-slash"}, "is not DEPLOYMENT/NODE"),
        ({"workload": "grasp", "on": "/nonexistent/fleet.toml"}, "no such deployment file"),
        (
            {"workload": "grasp", "nodes": "1:2", "join_wait": -1},
            r"--join-wait -1 is out of range: use 0\.\.3600",
        ),
        (
            {"workload": "grasp", "nodes": 2, "target": "accuracy"},
            "--target 'accuracy': expected METRIC=VALUE",
        ),
    ],
)
def test_bad_arguments_are_one_line_when_the_description_is_built(
    arguments: dict[str, object], says: str
) -> None:
    from fogros_dist.errors import ConfigError
    from fogros_dist.launch import FogTraining

    with pytest.raises(ConfigError, match=says) as raised:
        FogTraining(**arguments)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)
