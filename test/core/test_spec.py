"""Specs round-trip through JSON (never pickle) and reject malformed input by name."""

from __future__ import annotations

import json

import pytest

from fogros_dist.deploy.file import parse_deployment, topic_from_user
from fogros_dist.errors import ConfigError
from fogros_dist.spec import (
    BridgeRunSpec,
    DeploymentSpec,
    MachineSpec,
    NodeSpec,
    QosSpec,
    TopicSpec,
    from_json,
    to_json,
)


def _spec() -> DeploymentSpec:
    image = TopicSpec(name="/camera/image", type="sensor_msgs/msg/Image", qos=QosSpec(depth=3))
    return DeploymentSpec(
        name="demo",
        machines=(MachineSpec(name="gpu", provider="local", options=(("domain_id", 140), ("python", "py"))),),
        nodes=(
            NodeSpec(
                name="edges",
                package="fogros_dist",
                executable="edge_detector",
                machine="gpu",
                parameters=(("rate", 2.5), ("on", True), ("n", 3)),
                topics_in=(image,),
                topics_out=(TopicSpec(name="/edges"),),
            ),
        ),
    )


def test_deployment_round_trips_through_json() -> None:
    spec = _spec()
    text = to_json(spec)
    assert "pickle" not in text
    assert from_json(DeploymentSpec, text) == spec
    # Scalars keep their JSON types: a bool parameter must not come back as an int.
    params = from_json(DeploymentSpec, text).nodes[0].parameters
    assert [type(v) for _, v in params] == [float, bool, int]


def test_bridge_run_spec_round_trips() -> None:
    run = BridgeRunSpec(deployment="d", side="robot", machine="robot", connect=("tcp/127.0.0.1:7447",))
    assert from_json(BridgeRunSpec, to_json(run)) == run


def test_unknown_field_is_named() -> None:
    data = json.loads(to_json(_spec()))
    data["nodes"][0]["exectuable"] = "typo"
    with pytest.raises(ConfigError, match=r"unknown field 'exectuable'"):
        from_json(DeploymentSpec, data)


def test_wrong_type_is_named_with_its_path() -> None:
    data = json.loads(to_json(_spec()))
    data["nodes"][0]["topics_in"][0]["qos"]["depth"] = True
    with pytest.raises(ConfigError, match=r"qos\.depth"):
        from_json(DeploymentSpec, data)


def test_qos_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"reliability 'sometimes'.*'reliable' or 'best_effort'"):
        QosSpec(reliability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"depth 0 is out of range"):
        QosSpec(depth=0)


def test_unknown_machine_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"machine 'cpu'.*known: gpu"):
        _spec().machine("cpu")


def test_topic_shorthands() -> None:
    assert topic_from_user("/a:std_msgs/msg/String") == TopicSpec(name="/a", type="std_msgs/msg/String")
    assert topic_from_user("/a") == TopicSpec(name="/a")
    table = topic_from_user({"name": "/a", "qos": {"reliability": "best_effort"}})
    assert table.qos.reliability == "best_effort"
    with pytest.raises(ConfigError, match=r"is not a topic"):
        topic_from_user(42)  # type: ignore[arg-type]


def test_parse_deployment_accepts_tables_for_pairs() -> None:
    spec = parse_deployment(
        {
            "name": "x",
            "machines": [{"name": "gpu", "options": {"domain_id": 150}}],
            "nodes": [
                {
                    "name": "n",
                    "package": "p",
                    "executable": "e",
                    "machine": "gpu",
                    "parameters": {"k": 1},
                    "remappings": {"/a": "/b"},
                    "topics_in": ["/a:std_msgs/msg/String"],
                }
            ],
        }
    )
    assert spec.machines[0].option("domain_id") == 150
    assert spec.nodes[0].remappings == (("/a", "/b"),)
    assert spec.nodes[0].parameters == (("k", 1),)
