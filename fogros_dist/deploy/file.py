"""Deployment files (TOML) and the user-facing shorthands they share with the launch adapters.

A deployment file is what `fogros-dist up FILE` reads on a machine without ROS 2::

    name = "edge-demo"
    distro = "jazzy"

    [[machines]]
    name = "gpu"
    provider = "local"          # or "ssh", "aws"; provider options go in [machines.options]

    [[nodes]]
    name = "edge_detector"
    package = "fogros_dist"
    executable = "edge_detector"
    machine = "gpu"
    topics_in = ["/camera/image:sensor_msgs/msg/Image"]
    topics_out = [{ name = "/camera/edges", type = "sensor_msgs/msg/Image", qos = { depth = 5 } }]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, QosSpec, TopicSpec, from_json

__all__ = ["load_deployment_file", "parse_deployment", "topic_from_user"]


def topic_from_user(value: object, *, where: str = "topic") -> TopicSpec:
    """A TopicSpec from ``"/name"``, ``"/name:pkg/msg/Type"``, a mapping or a TopicSpec."""
    if isinstance(value, TopicSpec):
        return value
    if isinstance(value, str):
        name, _, type_name = value.partition(":")
        return TopicSpec(name=name, type=type_name or None)
    if isinstance(value, Mapping):
        data = dict(value)
        if isinstance(data.get("qos"), Mapping):
            data["qos"] = from_json(QosSpec, data["qos"])
        try:
            return TopicSpec(**data)
        except TypeError as err:
            msg = f"{where}: {err}: a topic takes name, type and qos"
            raise ConfigError(msg) from err
    msg = f"{where}: {value!r} is not a topic: use '/name', '/name:pkg/msg/Type' or a table"
    raise ConfigError(msg)


def parse_deployment(data: Mapping[str, Any], *, where: str = "deployment") -> DeploymentSpec:
    """Build a DeploymentSpec from parsed TOML/JSON, accepting tables where the spec has pairs."""
    doc = dict(data)
    machines = [_pairs_field(dict(m), "options") for m in _list(doc.get("machines", []), f"{where}.machines")]
    nodes = []
    for i, raw in enumerate(_list(doc.get("nodes", []), f"{where}.nodes")):
        node = dict(raw)
        for key in ("parameters", "remappings", "env"):
            node = _pairs_field(node, key)
        for key in ("topics_in", "topics_out"):
            topics = _list(node.get(key, []), f"{where}.nodes[{i}].{key}")
            node[key] = [_topic_dict(topic_from_user(t, where=f"{where}.nodes[{i}].{key}")) for t in topics]
        nodes.append(node)
    doc["machines"] = machines
    doc["nodes"] = nodes
    return from_json(DeploymentSpec, doc)


def load_deployment_file(path: Path) -> DeploymentSpec:
    """Read a TOML deployment file; ConfigError names the file and the problem."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        msg = f"deployment file {str(path)!r} does not exist: check the path"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as err:
        msg = f"deployment file {str(path)!r} is not valid TOML: {err}"
        raise ConfigError(msg) from err
    return parse_deployment(data, where=path.name)


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        msg = f"{where}: expected a list, got {type(value).__name__}"
        raise ConfigError(msg)
    return value


def _pairs_field(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if isinstance(value, Mapping):
        item[key] = [[k, v] for k, v in value.items()]
    return item


def _topic_dict(topic: TopicSpec) -> dict[str, Any]:
    return {
        "name": topic.name,
        "type": topic.type,
        "qos": {
            "reliability": topic.qos.reliability,
            "durability": topic.qos.durability,
            "depth": topic.qos.depth,
        },
    }
