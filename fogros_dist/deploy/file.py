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

A node takes what a launch file's CloudNode takes: ``namespace``, ``parameters`` (a table),
``parameter_files`` (YAML files on the robot, shipped with the node and passed as
``--params-file`` in order), ``files`` (more files to ship: paths, or a table name = path),
``remappings``, ``arguments``, ``ros_arguments``, ``env``, ``prefix`` (a string, split like a
shell does), ``respawn``, ``respawn_delay``, ``respawn_max_retries``, ``sigterm_timeout``,
``sigkill_timeout``, ``output``, ``exec_name``, ``log_cmd``. Relative paths are taken from the
current directory; relative topic names from the node's namespace.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Ubuntu 22.04, ROS 2 Humble): the same parser, from PyPI
    import tomli as tomllib

from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, QosSpec, TopicSpec, from_json

__all__ = ["absolute_topic", "load_deployment_file", "parse_deployment", "topic_from_user"]


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


def absolute_topic(topic: TopicSpec, *, namespace: str, node: str) -> TopicSpec:
    """``topic`` with a relative name resolved as the node resolves it: ``name`` in the node's
    ``namespace`` ("" is the root), ``~/name`` under the node itself."""
    if topic.name.startswith("/"):
        return topic
    if topic.name == "~" or topic.name.startswith("~/"):
        return replace(topic, name=f"{namespace}/{node}{topic.name[1:]}")
    return replace(topic, name=f"{namespace}/{topic.name}")


def parse_deployment(
    data: Mapping[str, Any], *, where: str = "deployment", base: Path | None = None
) -> DeploymentSpec:
    """Build a DeploymentSpec from parsed TOML/JSON, accepting tables where the spec has pairs.

    Args:
        data: the parsed document.
        where: names the document in error messages.
        base: relative file paths (``parameter_files``, ``files``) start here (default: the
            current directory).

    Raises:
        ConfigError: naming the field, the bad value and the fix.
    """
    doc = dict(data)
    machines = [_pairs_field(dict(m), "options") for m in _list(doc.get("machines", []), f"{where}.machines")]
    nodes = []
    for i, raw in enumerate(_list(doc.get("nodes", []), f"{where}.nodes")):
        node = dict(raw)
        at = f"{where}.nodes[{i}]"
        for key in ("parameters", "remappings", "env"):
            node = _pairs_field(node, key)
        _shipped_files(node, at, base or Path.cwd())
        if isinstance(node.get("prefix"), str):
            node["prefix"] = shlex.split(node["prefix"])
        namespace = node.get("namespace", "")
        if isinstance(namespace, str):
            # The spec's root namespace is "", as launch_ros's "/" or an absent one.
            namespace = "" if namespace == "/" else namespace.rstrip("/")
            node["namespace"] = namespace
        name = node.get("name")
        for key in ("topics_in", "topics_out"):
            topics = [
                topic_from_user(t, where=f"{at}.{key}") for t in _list(node.get(key, []), f"{at}.{key}")
            ]
            if isinstance(namespace, str) and isinstance(name, str):
                topics = [absolute_topic(t, namespace=namespace, node=name) for t in topics]
            node[key] = [_topic_dict(t) for t in topics]
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


def _shipped_files(node: dict[str, Any], at: str, base: Path) -> None:
    """``parameter_files`` and ``files`` (paths here) as the spec's shipped files, in place."""
    shipped: list[dict[str, str]] = []
    names: list[str] = []
    for j, path in enumerate(_list(node.pop("parameter_files", []), f"{at}.parameter_files")):
        if not isinstance(path, str):
            msg = f"{at}.parameter_files[{j}]: expected a path, got {path!r}"
            raise ConfigError(msg)
        source = base / Path(path).expanduser()
        name = f"params-{j + 1}-{source.name}"
        shipped.append({"name": name, "source": str(source.absolute())})
        names.append(name)
    files = node.get("files", [])
    if isinstance(files, Mapping):
        pairs = list(files.items())
    else:
        pairs = [(None, f) for f in _list(files, f"{at}.files")]
    for name, path in pairs:
        if not isinstance(path, str):
            msg = f"{at}.files: expected a path, got {path!r}"
            raise ConfigError(msg)
        source = base / Path(path).expanduser()
        shipped.append({"name": name or source.name, "source": str(source.absolute())})
    if shipped:
        node["files"] = shipped
        node["parameter_files"] = names


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
