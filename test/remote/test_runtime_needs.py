"""Which machines get torch: the nodes that import it, unless the machine's option says otherwise."""

from __future__ import annotations

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.machines import AWS, SSHHost
from fogros_dist.providers.aws.config import parse_options as aws_options
from fogros_dist.providers.ssh.options import parse_options as ssh_options
from fogros_dist.remote.runtime_needs import needs_torch, wants_torch
from fogros_dist.spec import NodeSpec


def _node(name: str, executable: str, package: str = "fogros_dist") -> NodeSpec:
    return NodeSpec(name=name, package=package, executable=executable, machine="gpu")


def test_the_learned_workloads_need_torch_and_the_others_do_not() -> None:
    nodes = (
        _node("grasps", "grasp_planner"),
        _node("edges", "edge_detector"),
        _node("slam", "slam_node"),
        _node("policy", "policy_node"),
        _node("mine", "grasp_planner", package="my_lab_pkg"),
    )
    assert needs_torch(nodes) == ("grasps", "policy")
    assert wants_torch(None, nodes) is True
    assert wants_torch(None, nodes[1:3]) is False
    # The option wins either way.
    assert wants_torch(False, nodes) is False
    assert wants_torch(True, ()) is True


def test_the_torch_option_is_unset_unless_given() -> None:
    assert ssh_options(SSHHost("gpu", "lab-gpu")).torch is None
    assert ssh_options(SSHHost("gpu", "lab-gpu", torch=False)).torch is False
    assert aws_options(AWS("gpu", region="us-west-2")).torch is None
    assert aws_options(AWS("gpu", region="us-west-2", torch=True)).torch is True
    with pytest.raises(ConfigError, match=r"option torch must be true or false, got 3"):
        aws_options(AWS("gpu", region="us-west-2", torch=3))  # type: ignore[arg-type]


def test_proxy_jump_is_checked_at_plan_time() -> None:
    assert (
        ssh_options(SSHHost("gpu", "lab-gpu", proxy_jump="me@bastion:2222")).proxy_jump == "me@bastion:2222"
    )
    with pytest.raises(ConfigError, match=r"jump host 'me@' in proxy_jump 'me@' is malformed"):
        ssh_options(SSHHost("gpu", "lab-gpu", proxy_jump="me@"))
