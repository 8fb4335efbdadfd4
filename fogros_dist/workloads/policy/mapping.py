"""The user's topic mapping: command-line options and TOML files, resolved against a bag.

Which topics and fields make up a robot's observation and action, the rate episodes are
resampled to and the clock they are read on, as ``fogros-dist train policy`` options::

    --obs-topic /my_robot/state --obs-fields position[0],position[1],velocity[0],velocity[1]
    --action-topic /my_robot/cmd --action-fields linear.x,linear.y --rate 20 --time receive

or as a TOML file (``--mapping FILE``) with the same keys; a file whose ``[mapping]`` table
holds them (a fleet file, say) works too, the rest of it is not read here::

    rate = 20                  # Hz: episodes are resampled to it and the policy acts at it
    time = "receive"           # or "header": the messages' header stamps
    tolerance = 0.005          # s, optional: how late a sample may be and still count

    [[observation]]            # one table per topic; the first is the clock (the state stream)
    topic = "/my_robot/state"
    fields = ["position[0]", "position[1]", "velocity[0]", "velocity[1]"]
    type = "sensor_msgs/msg/JointState"   # optional: read from the bags
    resample = "zoh"                      # or "linear"

    [action]
    topic = "/my_robot/cmd"
    fields = ["linear.x", "linear.y"]

Options given on the command line win over the file's keys; whatever neither gives is the
project's own mapping (:data:`~fogros_dist.workloads.policy.dataset.DEFAULT_MAPPING`).
:func:`resolve_mapping` takes topic types from a bag and checks every field path against its
type's definition (:mod:`.fieldpaths`) before anything is read.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Ubuntu 22.04, ROS 2 Humble): the same parser, from PyPI
    import tomli as tomllib

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.dataset import (
    DEFAULT_MAPPING,
    BagMapping,
    Resample,
    TimeSource,
    TopicFields,
)
from fogros_dist.workloads.policy.fieldpaths import check_field_path

__all__ = [
    "TIME_SOURCES",
    "MappingChoice",
    "TopicChoice",
    "add_mapping_arguments",
    "describe_mapping",
    "load_mapping_file",
    "mapping_from_args",
    "parse_mapping",
    "resolve_mapping",
]

# What users write -> BagMapping.time_source ("log" is rosbag2's name for the receive time).
TIME_SOURCES: dict[str, TimeSource] = {"header": "header", "receive": "log", "log": "log"}
# A mapping is a few lines; this bounds what a wrong path (a log, a bag's storage) costs.
_MAX_FILE_BYTES = 1024 * 1024
_TOP_KEYS = ("rate", "time", "tolerance", "observation", "action")
_TOPIC_KEYS = ("topic", "fields", "type", "resample")


@dataclass(frozen=True, kw_only=True)
class TopicChoice:
    """One mapped topic as the user gave it; ``type`` None: take it from the bags."""

    topic: str
    fields: tuple[str, ...]
    type: str | None = None
    resample: Resample = "zoh"


@dataclass(frozen=True, kw_only=True)
class MappingChoice:
    """What the user chose; None: not chosen (the file's, then the project's default)."""

    observation: tuple[TopicChoice, ...] | None = None
    action: TopicChoice | None = None
    rate_hz: float | None = None
    time_source: TimeSource | None = None
    tolerance_s: float | None = None

    def over(self, base: MappingChoice) -> MappingChoice:
        """This choice, with ``base`` filling what it leaves open."""
        return MappingChoice(
            observation=self.observation if self.observation is not None else base.observation,
            action=self.action if self.action is not None else base.action,
            rate_hz=self.rate_hz if self.rate_hz is not None else base.rate_hz,
            time_source=self.time_source if self.time_source is not None else base.time_source,
            tolerance_s=self.tolerance_s if self.tolerance_s is not None else base.tolerance_s,
        )


def add_mapping_arguments(parser: argparse.ArgumentParser) -> None:
    """The mapping's options of `fogros-dist train policy`."""
    group = parser.add_argument_group(
        "topic mapping (default: the project's /joint_states, /goal -> /cmd at 10 Hz, header stamps)"
    )
    group.add_argument(
        "--obs-topic",
        action="append",
        metavar="TOPIC[:TYPE]",
        help="an observation topic (repeat for more; the first is the state stream); its type is "
        "read from the bags unless given",
    )
    group.add_argument(
        "--obs-fields",
        action="append",
        metavar="PATH,PATH",
        help="the numbers taken from the matching --obs-topic, e.g. position[0],position[1],velocity[0]",
    )
    group.add_argument(
        "--obs-resample",
        action="append",
        choices=get_args(Resample),
        help="how the matching --obs-topic is read between samples: zoh (hold, default) or linear",
    )
    group.add_argument("--action-topic", metavar="TOPIC[:TYPE]", help="the command topic")
    group.add_argument(
        "--action-fields", metavar="PATH,PATH", help="the action's numbers, e.g. linear.x,linear.y"
    )
    group.add_argument("--rate", type=float, metavar="HZ", help="resample episodes to, and act at, HZ (10)")
    group.add_argument(
        "--time",
        choices=("header", "receive"),
        help="read messages at their header stamps (header, default) or when the recorder got them "
        "(receive; for types without a header, such as Twist)",
    )
    group.add_argument(
        "--tolerance",
        type=float,
        metavar="S",
        help="how late a sample may be stamped and still count for a step (default: half a period)",
    )
    group.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="a TOML file with these keys (rate, time, tolerance, [[observation]], [action]); "
        "options given here win",
    )


def _split_fields(text: str, where: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(","))
    if not text.strip() or any(not p for p in parts):
        msg = f"{where} {text!r} has an empty field path: separate paths with commas, e.g. linear.x,linear.y"
        raise ConfigError(msg)
    return parts


def _topic_and_type(text: str) -> tuple[str, str | None]:
    topic, _, type_name = text.partition(":")
    return topic, type_name or None


def _checked_number(value: float | None, name: str, *, positive: bool) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "positive" if positive else "zero or more"
        msg = f"{name} ({value}) must be a finite number, {bound}"
        raise ConfigError(msg)
    return value


def _observation_from_args(args: argparse.Namespace) -> tuple[TopicChoice, ...] | None:
    topics: list[str] = args.obs_topic or []
    fields: list[str] = args.obs_fields or []
    resample: list[str] = args.obs_resample or []
    if not topics:
        if fields or resample:
            msg = "--obs-fields and --obs-resample need --obs-topic: name the topic each set belongs to"
            raise ConfigError(msg)
        return None
    if len(fields) != len(topics):
        msg = (
            f"{len(topics)} --obs-topic and {len(fields)} --obs-fields: give one --obs-fields after each "
            "--obs-topic, e.g. --obs-topic /state --obs-fields position[0],velocity[0]"
        )
        raise ConfigError(msg)
    if resample and len(resample) != len(topics):
        msg = f"{len(topics)} --obs-topic and {len(resample)} --obs-resample: give one per topic, or none"
        raise ConfigError(msg)
    out = []
    for i, (spec, paths) in enumerate(zip(topics, fields, strict=True)):
        topic, type_name = _topic_and_type(spec)
        how = resample[i] if resample else "zoh"
        out.append(
            TopicChoice(
                topic=topic,
                fields=_split_fields(paths, "--obs-fields"),
                type=type_name,
                resample="linear" if how == "linear" else "zoh",
            )
        )
    return tuple(out)


def _action_from_args(args: argparse.Namespace) -> TopicChoice | None:
    if args.action_topic is None and args.action_fields is None:
        return None
    if args.action_topic is None or args.action_fields is None:
        msg = "--action-topic and --action-fields go together: name the command topic and its fields"
        raise ConfigError(msg)
    topic, type_name = _topic_and_type(args.action_topic)
    return TopicChoice(
        topic=topic, fields=_split_fields(args.action_fields, "--action-fields"), type=type_name
    )


def mapping_from_args(args: argparse.Namespace) -> MappingChoice:
    """The mapping the options (and ``--mapping FILE``, which they override) choose.

    Raises:
        ConfigError: options that do not pair up, bad numbers, or as :func:`load_mapping_file`.
    """
    given = MappingChoice(
        observation=_observation_from_args(args),
        action=_action_from_args(args),
        rate_hz=_checked_number(args.rate, "--rate", positive=True),
        time_source=None if args.time is None else TIME_SOURCES[args.time],
        tolerance_s=_checked_number(args.tolerance, "--tolerance", positive=False),
    )
    if args.mapping is None:
        return given
    return given.over(load_mapping_file(args.mapping))


def _read_text(path: Path) -> str:
    shown = f"mapping file {path}"
    if not path.exists():
        msg = f"{shown} does not exist: check the path"
        raise ConfigError(msg)
    if not path.is_file():
        msg = f"{shown} is not a regular file: give a TOML file"
        raise ConfigError(msg)
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as err:
        msg = f"{shown} cannot be read ({err.strerror or type(err).__name__}): check its permissions"
        raise ConfigError(msg) from err
    if len(data) > _MAX_FILE_BYTES:
        msg = f"{shown} is larger than {_MAX_FILE_BYTES // 1024} KiB: give the mapping's TOML file"
        raise ConfigError(msg)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        msg = f"{shown} is not UTF-8 text (byte {err.start}): save it as UTF-8"
        raise ConfigError(msg) from err


def load_mapping_file(path: Path) -> MappingChoice:
    """Read a mapping from a TOML file (its top level, or its ``[mapping]`` table).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a key is unknown or of the wrong
            type; one line naming the file, the key and the fix.
    """
    text = _read_text(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = f"mapping file {path} is not valid TOML ({err}): fix that line"
        raise ConfigError(msg) from err
    table = document.get("mapping")
    if isinstance(table, Mapping):
        return parse_mapping(table, where=f"{path} [mapping]")
    return parse_mapping(document, where=str(path))


def _describe(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    kind = next(
        (v for k, v in kinds.items() if type(value) is k), "a table" if isinstance(value, Mapping) else ""
    )
    return f"{value!r} ({kind})" if kind else repr(value)


def _unknown_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        msg = f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})"
        raise ConfigError(msg)


def _string(table: Mapping[str, Any], key: str, where: str, example: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        msg = f"{where}: {key} is {_describe(value)}, expected a non-empty string, e.g. {key} = {example}"
        raise ConfigError(msg)
    return value


def _number(table: Mapping[str, Any], key: str, where: str, example: str, *, positive: bool) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    # bool is an int in Python; `rate = true` is not a rate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: {key} is {_describe(value)}, expected a number, e.g. {key} = {example}"
        raise ConfigError(msg)
    return _checked_number(float(value), f"{where}: {key}", positive=positive)


def _topic(raw: object, where: str) -> TopicChoice:
    if not isinstance(raw, Mapping):
        msg = f"{where} is {_describe(raw)}, expected a table with topic and fields"
        raise ConfigError(msg)
    _unknown_keys(raw, _TOPIC_KEYS, where)
    topic = _string(raw, "topic", where, '"/my_robot/state"')
    if topic is None:
        msg = f'{where}: topic is missing: name it, e.g. topic = "/my_robot/state"'
        raise ConfigError(msg)
    fields_raw = raw.get("fields")
    if isinstance(fields_raw, str):
        fields = _split_fields(fields_raw, f"{where}: fields")
    elif isinstance(fields_raw, list) and fields_raw and all(isinstance(f, str) and f for f in fields_raw):
        fields = tuple(fields_raw)
    else:
        shown = "missing" if fields_raw is None else f"{_describe(fields_raw)}"
        example = 'fields = ["linear.x", "linear.y"]'
        msg = f"{where}: fields is {shown}, expected a list of field paths, e.g. {example}"
        raise ConfigError(msg)
    resample = _string(raw, "resample", where, '"linear"') or "zoh"
    if resample not in get_args(Resample):
        msg = f'{where}: resample is {resample!r}, expected "zoh" or "linear"'
        raise ConfigError(msg)
    return TopicChoice(
        topic=topic,
        fields=fields,
        type=_string(raw, "type", where, '"sensor_msgs/msg/JointState"'),
        resample="linear" if resample == "linear" else "zoh",
    )


def parse_mapping(table: Mapping[str, Any], *, where: str = "mapping") -> MappingChoice:
    """A :class:`MappingChoice` from parsed TOML, every key's type checked.

    Raises:
        ConfigError: naming ``where``, the key, the bad value and the fix.
    """
    _unknown_keys(table, _TOP_KEYS, where)
    time = _string(table, "time", where, '"receive"')
    if time is not None and time not in TIME_SOURCES:
        msg = f'{where}: time is {time!r}, expected "header" or "receive"'
        raise ConfigError(msg)
    observation: tuple[TopicChoice, ...] | None = None
    raw_obs = table.get("observation")
    if raw_obs is not None:
        # [observation] for one topic, [[observation]] for several.
        items = raw_obs if isinstance(raw_obs, list) else [raw_obs]
        if not items:
            msg = f"{where}: observation is empty: add an [[observation]] table with topic and fields"
            raise ConfigError(msg)
        observation = tuple(_topic(item, f"{where}: observation[{i}]") for i, item in enumerate(items))
    raw_action = table.get("action")
    return MappingChoice(
        observation=observation,
        action=None if raw_action is None else _topic(raw_action, f"{where}: action"),
        rate_hz=_number(table, "rate", where, "20", positive=True),
        time_source=None if time is None else TIME_SOURCES[time],
        tolerance_s=_number(table, "tolerance", where, "0.005", positive=False),
    )


def _default_choice(fields: TopicFields) -> TopicChoice:
    return TopicChoice(topic=fields.topic, fields=fields.fields, type=fields.type, resample=fields.resample)


def _resolve_topic(
    choice: TopicChoice, *, role: str, bag: Path, recorded: Mapping[str, str], types: MessageTypes
) -> TopicFields:
    recorded_type = recorded.get(choice.topic)
    if recorded_type is None:
        msg = (
            f"bag {bag} has no topic {choice.topic} (mapped to the {role}): it records "
            f"{', '.join(sorted(recorded)) or 'nothing'}; record {choice.topic} or change the mapping"
        )
        raise ConfigError(msg)
    if choice.type is not None and choice.type != recorded_type:
        msg = (
            f"bag {bag} records {choice.topic} as {recorded_type}, the mapping says {choice.type}: "
            f"drop the type or write {recorded_type}"
        )
        raise ConfigError(msg)
    for path in choice.fields:
        check_field_path(types, topic=choice.topic, type_name=recorded_type, path=path)
    return TopicFields(topic=choice.topic, type=recorded_type, fields=choice.fields, resample=choice.resample)


def resolve_mapping(
    choice: MappingChoice, *, bag: Path, recorded: Mapping[str, str], types: MessageTypes
) -> BagMapping:
    """The :class:`BagMapping` ``choice`` makes with the project's defaults, typed from a bag.

    Args:
        choice: what the user chose.
        bag: the bag ``recorded`` comes from (named in messages).
        recorded: ``{topic: message type}`` that bag records.
        types: the message definitions field paths are checked against.

    Raises:
        ConfigError: a mapped topic is not recorded, has another type than given, a field path
            does not name a number of its type (the message lists those there are), or header
            stamps are asked of a type without a header.
        UnknownMessageType: a recorded type is not known.
    """
    default = DEFAULT_MAPPING
    observation = tuple(
        _resolve_topic(t, role="observation", bag=bag, recorded=recorded, types=types)
        for t in (choice.observation or tuple(_default_choice(t) for t in default.observation))
    )
    action = _resolve_topic(
        choice.action or _default_choice(default.action),
        role="action",
        bag=bag,
        recorded=recorded,
        types=types,
    )
    time_source = choice.time_source or default.time_source
    if time_source == "header":
        for fields in (*observation, action):
            names = {name for name, _ in types.field_definitions(fields.type)[1]}
            if "header" not in names:
                msg = (
                    f"{fields.topic} ({fields.type}) has no header stamp to read it at: use the receive "
                    '(recording) time, --time receive (time = "receive" in a mapping file)'
                )
                raise ConfigError(msg)
    return BagMapping(
        observation=observation,
        action=action,
        rate_hz=choice.rate_hz if choice.rate_hz is not None else default.rate_hz,
        time_source=time_source,
        tolerance_s=choice.tolerance_s if choice.tolerance_s is not None else default.tolerance_s,
    )


def describe_mapping(mapping: BagMapping) -> str:
    """``"/state position[0],velocity[0] -> /cmd linear.x at 20 Hz, receive times"``."""
    observed = "; ".join(f"{t.topic} {','.join(t.fields)}" for t in mapping.observation)
    clock = "header stamps" if mapping.time_source == "header" else "receive times"
    action = f"{mapping.action.topic} {','.join(mapping.action.fields)}"
    return f"{observed} -> {action} at {mapping.rate_hz:g} Hz, {clock}"
