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
``sigkill_timeout``, ``output``, ``exec_name``, ``log_cmd``, and the services and actions to
bridge: ``services``/``actions`` (served by the node, called from the robot) and
``robot_services``/``robot_actions`` (served on the robot, called by the node), each
``"/name"``, ``"/name:pkg/srv/Type"`` (``pkg/action/Type``) or a table with ``timeout`` (and for
an action ``result_timeout``); ``bridge_parameters = false`` keeps the node's parameter services
off the robot. Relative paths are taken from the
current directory; relative topic names from the node's namespace. ``log_max_bytes`` (top level)
sets the size at which each process's output files rotate (default 10 MiB).

A file is read only if it is a regular file of at most 1 MiB of UTF-8; anything else (a
directory, a device, a FIFO, another encoding), a table where a list belongs or the reverse, a
value of the wrong type, and a NUL or control character in a name fail in one line naming the
file, the field and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Ubuntu 22.04, ROS 2 Humble): the same parser, from PyPI
    import tomli as tomllib

from fogros_dist.errors import ConfigError
from fogros_dist.spec import ActionSpec, DeploymentSpec, ServiceSpec, TopicSpec, from_json

__all__ = [
    "absolute_name",
    "absolute_topic",
    "action_from_user",
    "check_text",
    "load_deployment_file",
    "parse_deployment",
    "service_from_user",
    "topic_from_user",
]

# A deployment file is a few KiB; this bounds what a wrong path (a log, a device) can cost.
MAX_FILE_BYTES = 1024 * 1024
# Fields whose values name something (files, processes, graph entities, keys): plain text only.
_NAME_FIELDS = frozenset(
    {"name", "provider", "package", "executable", "machine", "namespace", "exec_name", "type", "distro"}
)
# Pair fields whose keys (and, for remappings, values) are names.
_NAMED_KEYS = frozenset({"options", "parameters", "env", "remappings"})


def topic_from_user(value: object, *, where: str = "topic") -> TopicSpec:
    """A TopicSpec from ``"/name"``, ``"/name:pkg/msg/Type"``, a mapping or a TopicSpec."""
    if isinstance(value, TopicSpec):
        return value
    if isinstance(value, str):
        name, _, type_name = value.partition(":")
        return TopicSpec(name=name, type=type_name or None)
    if isinstance(value, Mapping):
        try:
            # from_json checks each field's type (a qos that is not a table, a name that is not
            # a string), naming it.
            return from_json(TopicSpec, dict(value))
        except ConfigError as err:
            msg = f"{where}: {err}: a topic takes name, type, qos (a table) and codec"
            raise ConfigError(msg) from err
    msg = f"{where}: {value!r} is not a topic: use '/name', '/name:pkg/msg/Type' or a table"
    raise ConfigError(msg)


def service_from_user(value: object, *, where: str = "service") -> ServiceSpec:
    """A ServiceSpec from ``"/name"``, ``"/name:pkg/srv/Type"``, a mapping (name, type, timeout)
    or a ServiceSpec."""
    if isinstance(value, ServiceSpec):
        return value
    return _named_from_user(ServiceSpec, value, where=where, kind="service", example="pkg/srv/Type")


def action_from_user(value: object, *, where: str = "action") -> ActionSpec:
    """An ActionSpec from ``"/name"``, ``"/name:pkg/action/Type"``, a mapping (name, type,
    timeout, result_timeout) or an ActionSpec."""
    if isinstance(value, ActionSpec):
        return value
    return _named_from_user(ActionSpec, value, where=where, kind="action", example="pkg/action/Type")


_Named = TypeVar("_Named", ServiceSpec, ActionSpec)


def _named_from_user(cls: type[_Named], value: object, *, where: str, kind: str, example: str) -> _Named:
    if isinstance(value, str):
        name, _, type_name = value.partition(":")
        return cls(name=name, type=type_name or None)
    if isinstance(value, Mapping):
        try:
            return from_json(cls, dict(value))
        except ConfigError as err:
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            msg = f"{where}: {err}: a {kind} takes {fields}"
            raise ConfigError(msg) from err
    msg = f"{where}: {value!r} is not a {kind}: use '/name', '/name:{example}' or a table"
    raise ConfigError(msg)


def absolute_name(name: str, *, namespace: str, node: str) -> str:
    """A relative topic, service or action name resolved as the node resolves it: ``name`` in
    the node's ``namespace`` ("" is the root), ``~/name`` under the node itself."""
    if name.startswith("/"):
        return name
    if name == "~" or name.startswith("~/"):
        return f"{namespace}/{node}{name[1:]}"
    return f"{namespace}/{name}"


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
    doc = dict(_table(data, where))
    _check_document_text(doc, where)
    machines = [
        _pairs_field(dict(_table(m, f"{where}.machines[{i}]")), "options")
        for i, m in enumerate(_list(doc.get("machines", []), f"{where}.machines"))
    ]
    nodes = []
    for i, raw in enumerate(_list(doc.get("nodes", []), f"{where}.nodes")):
        at = f"{where}.nodes[{i}]"
        node = dict(_table(raw, at))
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
        _services_and_actions(node, at)
        nodes.append(node)
    doc["machines"] = machines
    doc["nodes"] = nodes
    spec = from_json(DeploymentSpec, doc)
    check_text(spec, where=where)
    return spec


def check_text(spec: DeploymentSpec, *, where: str = "deployment") -> None:
    """Refuse a NUL anywhere in ``spec`` and any control character in a name (a name, package,
    executable, namespace, topic or type, a key of options, parameters or env, a remapping).

    Either would reach a file name, an exec() or another machine's graph, and fail there with an
    error that names neither the field nor the fix.

    Raises:
        ConfigError: naming the field and the value.
    """
    _check_value(spec, where, named=False)


def load_deployment_file(path: Path) -> DeploymentSpec:
    """Read a TOML deployment file; ConfigError names the file and the problem."""
    text = _read_deployment_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = f"deployment file {str(path)!r} is not valid TOML: {err}"
        raise ConfigError(msg) from err
    except RecursionError:
        msg = f"deployment file {str(path)!r} nests arrays or tables too deeply: flatten it"
        raise ConfigError(msg) from None
    return parse_deployment(data, where=path.name)


def _read_deployment_text(path: Path) -> str:
    """The file's text: only from a regular file, at most MAX_FILE_BYTES, UTF-8."""
    shown = repr(str(path))
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        msg = f"deployment file {shown} does not exist: check the path"
        raise ConfigError(msg) from None
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err)
        msg = f"deployment file {shown} cannot be opened ({reason}): check the path and its permissions"
        raise ConfigError(msg) from err
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            example = path / "deploy.toml"
            msg = f"deployment file {shown} is a directory: give the TOML file in it (e.g. {example})"
            raise ConfigError(msg)
        if not stat.S_ISREG(mode):
            msg = f"deployment file {shown} is not a regular file ({_file_kind(mode)}): give a TOML file"
            raise ConfigError(msg)
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except OSError as err:
        msg = f"deployment file {shown} cannot be read ({err.strerror}): check its permissions"
        raise ConfigError(msg) from err
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        msg = f"deployment file {shown} is larger than {MAX_FILE_BYTES // 1024} KiB: is it the right file?"
        raise ConfigError(msg)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        msg = f"deployment file {shown} is not UTF-8 text (byte {err.start}): save it as UTF-8"
        raise ConfigError(msg) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = f"{where}: expected a table, got {_type_name(value)}: write it as [[...]] or {{ key = value }}"
        raise ConfigError(msg)
    return value


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _check_document_text(value: Any, where: str) -> None:
    """NUL anywhere in the parsed document (before the spec is built: some fields become paths)."""
    if isinstance(value, str):
        if "\0" in value:
            msg = f"{where}: {value!r} contains a NUL character: remove it"
            raise ConfigError(msg)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_document_text(key, where)
            _check_document_text(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_document_text(item, f"{where}[{i}]")


def _check_value(value: Any, where: str, *, named: bool) -> None:
    if isinstance(value, str):
        bad = next((c for c in value if c == "\0" or (named and (ord(c) < 0x20 or ord(c) == 0x7F))), None)
        if bad is not None:
            what = "a NUL character" if bad == "\0" else f"the control character {bad!r}"
            msg = f"{where}: {value!r} contains {what}: use plain text"
            raise ConfigError(msg)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for spec_field in dataclasses.fields(value):
            item = getattr(value, spec_field.name)
            at = f"{where}.{spec_field.name}"
            if spec_field.name in _NAMED_KEYS:
                for j, pair in enumerate(item):
                    _check_value(pair[0], f"{at}[{j}]", named=True)
                    _check_value(pair[1], f"{at}[{j}]", named=spec_field.name == "remappings")
            else:
                _check_value(item, at, named=spec_field.name in _NAME_FIELDS)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", named=named)


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        msg = f"{where}: expected a list, got {_type_name(value)}: write it as [...] or [[...]] tables"
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


def _services_and_actions(node: dict[str, Any], at: str) -> None:
    """``services``/``robot_services`` and ``actions``/``robot_actions`` as the spec's, in place,
    with relative names resolved in the node's namespace (as its topics')."""
    namespace, name = node.get("namespace", ""), node.get("name")
    for key in ("services", "robot_services", "actions", "robot_actions"):
        if key not in node:
            continue
        parse = service_from_user if "services" in key else action_from_user
        items = [parse(v, where=f"{at}.{key}") for v in _list(node[key], f"{at}.{key}")]
        if isinstance(namespace, str) and isinstance(name, str):
            items = [replace(i, name=absolute_name(i.name, namespace=namespace, node=name)) for i in items]
        node[key] = [dataclasses.asdict(i) for i in items]


def _pairs_field(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if isinstance(value, Mapping):
        item[key] = [[k, v] for k, v in value.items()]
    return item


def _topic_dict(topic: TopicSpec) -> dict[str, Any]:
    item: dict[str, Any] = {"name": topic.name, "type": topic.type, "codec": topic.codec}
    if topic.qos is not None:
        item["qos"] = dataclasses.asdict(topic.qos)
    return item
