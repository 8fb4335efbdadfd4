"""Resolve a CloudNode in its launch context into a NodeSpec, the way launch_ros resolves a Node.

What launch_ros's ``Node._perform_substitutions`` and ``execute`` do for a local process happens
here for one that starts on another machine (same rules on Humble and Jazzy):

- namespace: the node's own, prefixed with what ``PushRosNamespace`` pushed (launch configuration
  ``ros_namespace``) unless absolute, then made absolute;
- parameters, in command-line order: ``SetParameter``/``SetParametersFromFile`` globals
  (``global_params``) first, then the node's own. Every entry becomes a YAML parameter file that
  travels with the node: dictionaries are written as launch_ros writes them (under
  ``/<namespace>/<name>`` when both name and namespace are given, else ``/**``), single rules
  (``SetParameter``, ``Parameter(...)``) under ``/**`` as ``-p`` would set them, and parameter
  files are read as ``ParameterFile`` reads them (with substitutions if ``allow_substs``);
- remappings: ``SetRemap`` globals (``ros_remaps``) first, then the node's own;
- everything else substituted; ``prefix`` split as a shell would.

Relative topic, service and action names resolve against the node's namespace (``~/x`` under
the node itself).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml  # type: ignore[import-untyped]  # ships with launch; no stubs in the venv
from launch.conditions import evaluate_condition_expression
from launch.substitutions import LaunchConfiguration
from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
from launch_ros.parameter_descriptions import Parameter
from launch_ros.utilities import evaluate_parameters, make_namespace_absolute, prefix_namespace

from fogros_dist.deploy.file import absolute_name, absolute_topic
from fogros_dist.errors import ConfigError
from fogros_dist.spec import (
    ActionSpec,
    MachineSpec,
    NodeSpec,
    OutputMode,
    ServiceSpec,
    ShippedFile,
    TopicSpec,
)

__all__ = ["CloudNodeArguments", "resolve_cloud_node"]

_OUTPUTS: tuple[OutputMode, ...] = ("screen", "log", "both")
_NOT_FILE_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, kw_only=True)
class CloudNodeArguments:
    """What a CloudNode was given, unexpanded (substitutions are resolved in its context).

    ``parameters`` and ``remappings`` are already normalized by launch_ros; ``files`` pairs a name
    on the machine (None: the file's own name) with a path on the robot.
    """

    package: Any
    executable: Any
    machine: MachineSpec
    topics_in: tuple[TopicSpec, ...] = ()
    topics_out: tuple[TopicSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    robot_services: tuple[ServiceSpec, ...] = ()
    robot_actions: tuple[ActionSpec, ...] = ()
    bridge_parameters: Any = True
    name: Any = None
    namespace: Any = None
    exec_name: Any = None
    parameters: tuple[Any, ...] = ()
    remappings: tuple[tuple[Any, Any], ...] = ()
    arguments: tuple[Any, ...] = ()
    ros_arguments: tuple[Any, ...] = ()
    env: tuple[tuple[Any, Any], ...] = ()
    additional_env: tuple[tuple[Any, Any], ...] = ()
    files: tuple[tuple[str | None, Any], ...] = ()
    prefix: Any = None
    output: Any = None
    respawn: Any = False
    respawn_delay: float | None = None
    respawn_max_retries: int = -1
    # ExecuteProcess's defaults: the launch configurations of the same name, else 5 s.
    sigterm_timeout: Any = field(default_factory=lambda: LaunchConfiguration("sigterm_timeout", default=5))
    sigkill_timeout: Any = field(default_factory=lambda: LaunchConfiguration("sigkill_timeout", default=5))
    log_cmd: bool = False


def resolve_cloud_node(raw: CloudNodeArguments, context: Any, *, staging: Callable[[], Path]) -> NodeSpec:
    """The NodeSpec ``raw`` stands for in launch context ``context``.

    Args:
        raw: the CloudNode's arguments.
        context: the launch context it executes in.
        staging: gives a fresh directory on the robot for the node's generated parameter files.

    Raises:
        ConfigError: a value cannot be used (names the argument, the value and the fix).
    """
    package = _text(context, raw.package)
    executable = _text(context, raw.executable)
    name = _text(context, raw.name) if raw.name is not None else executable
    own_namespace = _text(context, raw.namespace) if raw.namespace is not None else None
    pushed = context.launch_configurations.get("ros_namespace", None)
    namespace = make_namespace_absolute(prefix_namespace(pushed, own_namespace))
    ns = "" if namespace in (None, "/") else str(namespace)
    full = f"{ns}/{name}"
    # launch_ros names the node in a dictionary's file only when it knows the full name.
    params_key = full if raw.name is not None and namespace is not None else "/**"
    files, parameter_files = _parameter_files(raw, context, key=params_key, where=full, staging=staging)
    files += _shipped(raw.files, context)
    return NodeSpec(
        name=name,
        package=package,
        executable=executable,
        machine=raw.machine.name,
        namespace=ns,
        arguments=tuple(_text(context, a) for a in raw.arguments),
        ros_arguments=tuple(_text(context, a) for a in raw.ros_arguments),
        parameter_files=tuple(parameter_files),
        remappings=_remappings(raw, context),
        env=tuple((_text(context, k), _text(context, v)) for k, v in (*raw.env, *raw.additional_env)),
        files=tuple(files),
        prefix=tuple(shlex.split(_text(context, raw.prefix))) if raw.prefix is not None else (),
        respawn=_flag(context, raw.respawn, what=f"CloudNode {full}: respawn"),
        respawn_delay=float(raw.respawn_delay or 0.0),
        respawn_max_retries=int(raw.respawn_max_retries),
        sigterm_timeout=_seconds(context, raw.sigterm_timeout, what=f"CloudNode {full}: sigterm_timeout"),
        sigkill_timeout=_seconds(context, raw.sigkill_timeout, what=f"CloudNode {full}: sigkill_timeout"),
        output=_output(context, raw.output, where=full),
        exec_name=_text(context, raw.exec_name) if raw.exec_name is not None else "",
        log_cmd=bool(raw.log_cmd),
        topics_in=tuple(absolute_topic(t, namespace=ns, node=name) for t in raw.topics_in),
        topics_out=tuple(absolute_topic(t, namespace=ns, node=name) for t in raw.topics_out),
        services=tuple(_absolute(s, namespace=ns, node=name) for s in raw.services),
        actions=tuple(_absolute(a, namespace=ns, node=name) for a in raw.actions),
        robot_services=tuple(_absolute(s, namespace=ns, node=name) for s in raw.robot_services),
        robot_actions=tuple(_absolute(a, namespace=ns, node=name) for a in raw.robot_actions),
        bridge_parameters=_flag(context, raw.bridge_parameters, what=f"CloudNode {full}: bridge_parameters"),
    )


_Named = TypeVar("_Named", ServiceSpec, ActionSpec)


def _absolute(item: _Named, *, namespace: str, node: str) -> _Named:
    return replace(item, name=absolute_name(item.name, namespace=namespace, node=node))


def _text(context: Any, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return str(perform_substitutions(context, normalize_to_list_of_substitutions(value)))


def _parameter_files(
    raw: CloudNodeArguments, context: Any, *, key: str, where: str, staging: Callable[[], Path]
) -> tuple[list[ShippedFile], list[str]]:
    """The node's parameters as files to ship, and their names in command-line order."""
    out_dir: Path | None = None
    files: list[ShippedFile] = []

    def add(stem: str, text: str) -> None:
        nonlocal out_dir
        out_dir = out_dir or staging()
        name = f"params-{len(files) + 1}-{_NOT_FILE_NAME_CHAR.sub('_', stem)}"
        path = out_dir / name
        path.write_text(text)
        files.append(ShippedFile(name=name, source=str(path)))

    def add_rules(rules: Mapping[str, Any], node_key: str = "/**") -> None:
        add("parameters.yaml", _yaml({node_key: {"ros__parameters": dict(rules)}}))

    def add_file(path: Path) -> None:
        if not path.is_file():
            msg = f"CloudNode {where}: parameter file {str(path)!r} does not exist: check the path"
            raise ConfigError(msg)
        add(path.name, path.read_text())

    rules: dict[str, Any] = {}
    for item in context.launch_configurations.get("global_params", None) or ():
        if isinstance(item, tuple):
            rules[str(item[0])] = _yaml_value(item[1])
            continue
        if rules:
            add_rules(rules)
            rules = {}
        add_file(Path(os.path.abspath(item)))
    if rules:
        add_rules(rules)
    try:
        evaluated = evaluate_parameters(context, list(raw.parameters))
    except (TypeError, ValueError, OSError) as err:  # bad values; a parameter file not readable
        msg = f"CloudNode {where}: parameters: {err}"
        raise ConfigError(msg) from err
    for params in evaluated:
        if isinstance(params, Parameter):
            rule_name, value = params.evaluate(context)
            add_rules({rule_name: _yaml_value(value)})
        elif isinstance(params, Mapping):
            add_rules({str(k): _yaml_value(v) for k, v in params.items()}, key)
        else:
            add_file(Path(params))
    return files, [f.name for f in files]


def _yaml(data: Any) -> str:
    return str(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))


def _yaml_value(value: Any) -> Any:
    """An evaluated parameter value as plain YAML data (launch_ros keeps lists as tuples).

    SetParameter's values are evaluated too; launch_ros would pass them as ``-p name:=<str(value)>``
    text, which loses a string such as ``"!"`` or ``"true"``: written typed, they keep their type.
    """
    if isinstance(value, tuple | list):
        return [_yaml_value(v) for v in value]
    return value


def _shipped(files: Sequence[tuple[str | None, Any]], context: Any) -> list[ShippedFile]:
    shipped = []
    for name, source in files:
        path = Path(os.path.abspath(_text(context, source)))
        shipped.append(ShippedFile(name=name or path.name, source=str(path)))
    return shipped


def _remappings(raw: CloudNodeArguments, context: Any) -> tuple[tuple[str, str], ...]:
    pairs = [(str(a), str(b)) for a, b in context.launch_configurations.get("ros_remaps", None) or ()]
    pairs += [(_text(context, a), _text(context, b)) for a, b in raw.remappings]
    return tuple(pairs)


def _flag(context: Any, value: Any, *, what: str) -> bool:
    if isinstance(value, bool):
        return value
    try:
        return bool(evaluate_condition_expression(context, normalize_to_list_of_substitutions(value)))
    except Exception as err:  # launch's InvalidConditionExpressionError, and substitution errors
        msg = f"{what} {value!r}: {err}: use True or False"
        raise ConfigError(msg) from err


def _seconds(context: Any, value: Any, *, what: str) -> float:
    text = _text(context, value) if not isinstance(value, int | float) else str(value)
    try:
        return float(text)
    except ValueError:
        msg = f"{what} {text!r} is not a number of seconds: use e.g. 5.0"
        raise ConfigError(msg) from None


def _output(context: Any, value: Any, *, where: str) -> OutputMode:
    if value is None:
        # fogros_dist streams a remote node's output unless told otherwise.
        return "both"
    text = _text(context, value)
    for mode in _OUTPUTS:
        if text == mode:
            return mode
    msg = (
        f"CloudNode {where}: output {text!r} is not supported for a node on another machine: "
        f"use 'screen', 'log' or 'both'"
    )
    raise ConfigError(msg)
