"""TOML deployment files take a CloudNode's settings: namespace, parameter files, prefix, respawn..."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogros_dist.deploy.file import load_deployment_file
from fogros_dist.deploy.plan import make_plan
from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, ShippedFile

_FILE = """
name = "toml-nodes"

[[machines]]
name = "gpu"

[[nodes]]
name = "planner"
namespace = "/robot1/"
package = "my_pkg"
executable = "planner_node"
machine = "gpu"
parameter_files = ["config/planner.yaml", "/etc/fog/global.yaml"]
files = { "model.pt" = "models/grasp.pt" }
parameters = { speed = 2.5 }
ros_arguments = ["--log-level", "debug"]
prefix = "nice -n 5 'taskset' 0x1"
respawn = true
respawn_delay = 1.5
respawn_max_retries = 3
sigterm_timeout = 2
output = "log"
exec_name = "planner-r1"
topics_in = ["camera/image:sensor_msgs/msg/Image", "~/goal"]
topics_out = ["/grasps"]
"""


def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeploymentSpec:
    # Relative paths in the file are taken from the current directory.
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "f.toml"
    path.write_text(_FILE)
    return load_deployment_file(path)


def test_toml_nodes_take_launch_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (node,) = _load(tmp_path, monkeypatch).nodes
    assert node.namespace == "/robot1"
    assert node.files == (
        ShippedFile(name="params-1-planner.yaml", source=str(tmp_path / "config" / "planner.yaml")),
        ShippedFile(name="params-2-global.yaml", source="/etc/fog/global.yaml"),
        ShippedFile(name="model.pt", source=str(tmp_path / "models" / "grasp.pt")),
    )
    assert node.parameter_files == ("params-1-planner.yaml", "params-2-global.yaml")
    assert node.parameters == (("speed", 2.5),)
    assert node.ros_arguments == ("--log-level", "debug")
    assert node.prefix == ("nice", "-n", "5", "taskset", "0x1")
    assert (node.respawn, node.respawn_delay, node.respawn_max_retries) == (True, 1.5, 3)
    assert (node.sigterm_timeout, node.sigkill_timeout) == (2.0, 5.0)
    assert node.output == "log"
    assert node.process_name == "planner-r1"
    # Relative topic names resolve as the node resolves them: in its namespace, ~ under itself.
    assert [t.name for t in node.topics_in] == ["/robot1/camera/image", "/robot1/planner/goal"]
    assert [t.name for t in node.topics_out] == ["/grasps"]


def test_a_missing_parameter_file_fails_at_plan_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _load(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match=r"planner.yaml' to ship does not exist here: check the path"):
        make_plan(spec)
