"""Plan-time checks of machine and node names and of a node's settings: one line, before anything runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fogros_dist.deploy.plan import make_plan
from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, ShippedFile


def _spec(*nodes: NodeSpec, machine: str = "gpu") -> DeploymentSpec:
    return DeploymentSpec(name="names", machines=(MachineSpec(name=machine),), nodes=nodes)


def _node(**changes: object) -> NodeSpec:
    base = NodeSpec(name="talker", package="p", executable="e", machine="gpu")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ("robot", r"machine name 'robot' is reserved for this robot"),
        ("../gpu", r"machine name '../gpu' is invalid: use up to 63 letters"),
        ("gpu\n1", r"machine name 'gpu\\n1' is invalid"),
        ("a/b", r"machine name 'a/b' is invalid"),
        ("-gpu", r"machine name '-gpu' is invalid"),
    ],
)
def test_bad_machine_names_are_refused(machine: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(_spec(_node(machine=machine), machine=machine))


def test_good_names_pass() -> None:
    plan = make_plan(_spec(_node(namespace="/robot1/arm", machine="gpu-1.lab_a"), machine="gpu-1.lab_a"))
    assert plan.machines[0].machine == "gpu-1.lab_a"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "9lives"}, r"node name '9lives' .*is invalid: use letters, digits and '_'"),
        ({"name": "a-b"}, r"node name 'a-b' .*is invalid"),
        ({"name": "ns/talker"}, r"node name 'ns/talker' contains '/': put the namespace in namespace="),
        ({"namespace": "robot1"}, r"namespace 'robot1' is relative: use '/robot1'"),
        ({"namespace": "/robot 1"}, r"namespace of node '/robot 1/talker' has an invalid part 'robot 1'"),
        ({"exec_name": "bridge"}, r"process label 'bridge' is reserved for the bridge"),
        ({"exec_name": "../x"}, r"exec_name '../x' is invalid"),
        ({"output": "own_log"}, r"output 'own_log' is not supported: use one of screen, log, both"),
        ({"respawn_delay": -1.0}, r"respawn_delay -1.0 is negative"),
        ({"sigterm_timeout": -0.5}, r"sigterm_timeout -0.5 is negative"),
        ({"respawn_max_retries": -2}, r"respawn_max_retries -2 is invalid"),
        ({"env": (("BAD=NAME", "x"),)}, r"environment variable name 'BAD=NAME' is invalid"),
        ({"prefix": ("nice", "")}, r"prefix \['nice', ''\] has an empty word"),
    ],
)
def test_bad_node_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(_spec(_node(**changes)))


def test_one_full_name_twice_is_refused_but_namespaces_keep_nodes_apart() -> None:
    with pytest.raises(ConfigError, match=r"node '/talker' is defined twice"):
        make_plan(_spec(_node(), _node()))
    plan = make_plan(_spec(_node(namespace="/robot1"), _node(namespace="/robot2")))
    assert len(plan.spec.nodes) == 2
    with pytest.raises(ConfigError, match=r"process label 'x' is used by another node too"):
        make_plan(_spec(_node(namespace="/a", exec_name="x"), _node(namespace="/b", exec_name="x")))


def test_shipped_files_must_exist_and_be_plain_names(tmp_path: Path) -> None:
    real = tmp_path / "params.yaml"
    real.write_text("{}\n")
    missing = str(tmp_path / "gone.yaml")
    with pytest.raises(ConfigError, match=r"file '.*gone.yaml' to ship does not exist here"):
        make_plan(_spec(_node(files=(ShippedFile(name="gone.yaml", source=missing),))))
    with pytest.raises(ConfigError, match=r"shipped file name 'a/b.yaml' is invalid"):
        make_plan(_spec(_node(files=(ShippedFile(name="a/b.yaml", source=str(real)),))))
    twice = (ShippedFile(name="p.yaml", source=str(real)), ShippedFile(name="p.yaml", source=str(real)))
    with pytest.raises(ConfigError, match=r"two shipped files are both called 'p.yaml'"):
        make_plan(_spec(_node(files=twice)))
    with pytest.raises(
        ConfigError, match=r"parameter file 'other.yaml' is not among the node's shipped files"
    ):
        make_plan(_spec(_node(files=twice[:1], parameter_files=("other.yaml",))))
