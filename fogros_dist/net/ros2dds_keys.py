"""The Zenoh keys, liveliness tokens and QoS encoding of zenoh-bridge-ros2dds 1.x.

Read from its source (eclipse-zenoh/zenoh-plugin-ros2dds, ``zenoh-plugin-ros2dds/src/
liveliness_mgt.rs`` and ``ros2_utils.rs``), so that a robot already running that bridge, or a
Zenoh tool that reads its tokens, sees fogros_dist's routes as its own:

* **keys**: a ROS 2 name without its leading ``/`` (``/camera/image`` -> ``camera/image``), under
  the bridge's ``namespace`` when it has one other than ``/`` (``/robot1`` -> ``robot1/camera/
  image``). Services and actions use the same mapping; an action's parts are ``<name>/_action/
  send_goal`` and so on (:data:`ACTION_SUFFIXES`).
* **liveliness tokens**: ``@/<zenoh id>/@ros2_lv/<kind>/<key>/<type>[/<qos>]``, where ``kind`` is
  ``MP`` (a route publishing a ROS publisher's messages on Zenoh), ``MS`` (a route writing Zenoh
  messages to ROS subscribers), ``SS``/``SC`` (service server/client), ``AS``/``AC`` (action
  server/client). A key chunk cannot hold ``/``, so ``key`` and ``type`` travel with every ``/``
  as ``§``. ``type`` is the ROS 2 form (``std_msgs/msg/String``, ``example_interfaces/srv/
  AddTwoInts``, ``example_interfaces/action/Fibonacci``). Only ``MP`` and ``MS`` carry a QoS.
* **QoS**: ``<keyless>:<reliability>:<durability>:<history kind>,<depth>[:<user data>]``; each
  part is empty for DDS's default, ``keyless`` is empty for a keyless topic (every ROS 2 topic)
  and ``K`` otherwise, and the kinds are DDS's enum values (reliability best effort 0, reliable
  1; durability volatile 0, transient local 1, transient 2, persistent 3; history keep last 0,
  keep all 1). From Iron on, the user data is the endpoint's ``typehash=RIHS01_<hex>;``.

Deadline and lifespan have no part of their own in that format, yet a far-side writer that offers
no deadline never matches a subscriber that requests one. So a QoS with either travels in the
user data as two more of its ``key=value;`` pairs (``fogros_deadline_ns=<n>;
fogros_lifespan_ns=<n>;``, only when non-zero): zenoh-bridge-ros2dds carries user data as it is
and rmw ignores keys it does not know, so the form stays readable to both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, cast

from fogros_dist.errors import ConfigError
from fogros_dist.ros.names import validate_topic_name
from fogros_dist.ros.qos import KEEP_ALL_DEPTH, clamp_depth
from fogros_dist.spec import Durability, History, QosSpec, Reliability

__all__ = [
    "ACTION_SUFFIXES",
    "SLASH_ESCAPE",
    "DecodedQos",
    "Ros2Token",
    "TokenKind",
    "action_client_token",
    "action_server_token",
    "decode_qos",
    "encode_qos",
    "escape",
    "key_to_name",
    "name_to_key",
    "parse_token",
    "publisher_token",
    "service_client_token",
    "service_server_token",
    "subscriber_token",
    "token_pattern",
    "unescape",
]

# liveliness_mgt.rs: const SLASH_REPLACEMSNT_CHAR: &str = "§";
SLASH_ESCAPE = "§"
TokenKind = Literal["MP", "MS", "SS", "SC", "AS", "AC"]
_KINDS: tuple[TokenKind, ...] = ("MP", "MS", "SS", "SC", "AS", "AC")
_WITH_QOS = ("MP", "MS")
_PLUGIN_CHUNK = "@ros2_lv"
# ros2_utils.rs: KE_SUFFIX_ACTION_* (each under the action's own key).
ACTION_SUFFIXES = (
    "_action/send_goal",
    "_action/cancel_goal",
    "_action/get_result",
    "_action/feedback",
    "_action/status",
)

# Deadline and lifespan in the user data (fogros_dist's own keys; see the module's doc).
_DEADLINE_KEY, _LIFESPAN_KEY = "fogros_deadline_ns", "fogros_lifespan_ns"
_TIMING_FIELDS = {_DEADLINE_KEY: "deadline_s", _LIFESPAN_KEY: "lifespan_s"}

# DDS's enum values (cyclonedds dds_reliability_kind_t, dds_durability_kind_t, dds_history_kind_t).
_RELIABILITY = {"best_effort": 0, "reliable": 1}
_DURABILITY = {"volatile": 0, "transient_local": 1}
_HISTORY = {"keep_last": 0, "keep_all": 1}
# TRANSIENT and PERSISTENT writers also serve late joiners: to ROS 2 they are transient local.
_DURABILITY_IN = {0: "volatile", 1: "transient_local", 2: "transient_local", 3: "transient_local"}


def escape(text: str) -> str:
    """``text`` with every ``/`` as ``§``, fit for one key chunk (liveliness_mgt.rs escape_slashes)."""
    return text.replace("/", SLASH_ESCAPE)


def unescape(chunk: str) -> str:
    """Undo :func:`escape`."""
    return chunk.replace(SLASH_ESCAPE, "/")


def _check_namespace(namespace: str) -> str:
    if namespace != "/":
        validate_topic_name(namespace)
    return namespace


def name_to_key(name: str, *, namespace: str = "/") -> str:
    """The Zenoh key of a ROS 2 topic, service or action (ros2_utils.rs ros2_name_to_key_expr).

    Raises:
        InvalidTopicName: ``name`` or ``namespace`` is not an absolute ROS 2 name.
    """
    validate_topic_name(name)
    if _check_namespace(namespace) == "/":
        return name[1:]
    return f"{namespace[1:]}/{name[1:]}"


def key_to_name(key: str, *, namespace: str = "/") -> str:
    """The ROS 2 name of a Zenoh key: :func:`name_to_key` undone (ros2_utils.rs
    key_expr_to_ros2_name); a key outside ``namespace`` keeps all of it."""
    if _check_namespace(namespace) != "/":
        inside = namespace[1:] + "/"
        if key.startswith(inside):
            return "/" + key[len(inside) :]
    return "/" + key


@dataclass(frozen=True)
class DecodedQos:
    """What a token's QoS part says: the QoS (DDS defaults where a part is empty), whether the
    topic is keyless, and the user data (``typehash=...;``; "" without)."""

    qos: QosSpec
    keyless: bool = True
    user_data: str = ""


def encode_qos(qos: QosSpec, *, keyless: bool = True, user_data: str = "") -> str:
    """The token form of ``qos`` (liveliness_mgt.rs qos_to_key_expr), every part written out.

    A non-zero deadline or lifespan is appended to the user data (see the module's doc).

    Raises:
        ConfigError: ``user_data`` holds a character a key chunk cannot (``/ * $ # ?``) or ``:``.
    """
    if set(user_data) & set("/*$#?:"):
        msg = f"QoS user data {user_data!r} cannot travel in a token: it may not hold / * $ # ? or :"
        raise ConfigError(msg)
    for key, seconds in ((_DEADLINE_KEY, qos.deadline_s), (_LIFESPAN_KEY, qos.lifespan_s)):
        if seconds:
            user_data += f"{key}={round(seconds * 1e9)};"
    parts = [
        "" if keyless else "K",
        str(_RELIABILITY[qos.reliability]),
        str(_DURABILITY[qos.durability]),
        f"{_HISTORY[qos.history]},{qos.depth}",
    ]
    text = ":".join(parts)
    return f"{text}:{user_data}" if user_data else text


def decode_qos(text: str) -> DecodedQos:
    """Parse a token's QoS part (liveliness_mgt.rs key_expr_to_qos); an empty part is DDS's
    default for a writer: reliable, volatile, keep last 1.

    Raises:
        ConfigError: fewer than four ``:``-separated parts, or a part that is not a known value.
    """
    parts = text.split(":")
    if len(parts) < 4:
        msg = f"QoS {text!r} is not zenoh-bridge-ros2dds' form: expected e.g. ':1:0:0,10'"
        raise ConfigError(msg)
    keyless = parts[0] == ""
    try:
        reliability = "reliable" if parts[1] == "" else _key_for(_RELIABILITY, int(parts[1]))
        durability = "volatile" if parts[2] == "" else _DURABILITY_IN[int(parts[2])]
        history, depth = "keep_last", 1
        if parts[3]:
            kind, _, depth_text = parts[3].partition(",")
            history = _key_for(_HISTORY, int(kind))
            depth = int(depth_text)
    except (ValueError, KeyError) as err:
        msg = f"QoS {text!r} is not zenoh-bridge-ros2dds' form ({err}): expected e.g. ':1:0:0,10'"
        raise ConfigError(msg) from err
    # QosSpec's depth is 1..10000; keep-all (whose wire depth means nothing) bounds the backlog.
    depth = KEEP_ALL_DEPTH if history == "keep_all" else clamp_depth(depth)
    qos = QosSpec(
        reliability=cast(Reliability, reliability),
        durability=cast(Durability, durability),
        history=cast(History, history),
        depth=depth,
    )
    user_data, timing = _split_timing(parts[4] if len(parts) > 4 else "", text)
    qos = replace(qos, deadline_s=timing.get("deadline_s", 0.0), lifespan_s=timing.get("lifespan_s", 0.0))
    return DecodedQos(qos=qos, keyless=keyless, user_data=user_data)


def _split_timing(user_data: str, text: str) -> tuple[str, dict[str, float]]:
    """The user data without the deadline/lifespan pairs :func:`encode_qos` added, and those
    two as QosSpec fields (seconds)."""
    kept: list[str] = []
    timing: dict[str, float] = {}
    for pair in user_data.split(";"):
        key, _, value = pair.partition("=")
        field = _TIMING_FIELDS.get(key)
        if field is None:
            if pair:
                kept.append(pair + ";")
            continue
        try:
            timing[field] = int(value) / 1e9
        except ValueError as err:
            msg = f"QoS {text!r} has {key}={value!r}: expected a whole number of nanoseconds"
            raise ConfigError(msg) from err
    return "".join(kept), timing


def _key_for(table: dict[str, int], value: int) -> str:
    for key, number in table.items():
        if number == value:
            return key
    raise KeyError(value)


def _token(zid: str, kind: TokenKind, name: str, type_name: str, namespace: str) -> str:
    if not zid or set(zid) & set("/*$#?@ "):
        msg = f"Zenoh id {zid!r} cannot be a key chunk: pass str(session.zid())"
        raise ConfigError(msg)
    if not type_name or set(type_name) & set("*$#?@ " + SLASH_ESCAPE):
        msg = f"type {type_name!r} cannot travel in a token: use the ROS 2 form 'pkg/msg/Type'"
        raise ConfigError(msg)
    key = name_to_key(name, namespace=namespace)
    return f"@/{zid}/{_PLUGIN_CHUNK}/{kind}/{escape(key)}/{escape(type_name)}"


def publisher_token(
    zid: str,
    name: str,
    type_name: str,
    qos: QosSpec,
    *,
    keyless: bool = True,
    user_data: str = "",
    namespace: str = "/",
) -> str:
    """``@/<zid>/@ros2_lv/MP/<key>/<type>/<qos>``: this session publishes topic ``name`` (type
    ``pkg/msg/Type``, read from ROS publishers with ``qos``) on Zenoh.

    Raises:
        ConfigError: the Zenoh id, type or user data cannot be part of a key.
        InvalidTopicName: ``name`` is not a valid absolute topic name.
    """
    qos_part = encode_qos(qos, keyless=keyless, user_data=user_data)
    return f"{_token(zid, 'MP', name, type_name, namespace)}/{qos_part}"


def subscriber_token(
    zid: str,
    name: str,
    type_name: str,
    qos: QosSpec,
    *,
    keyless: bool = True,
    user_data: str = "",
    namespace: str = "/",
) -> str:
    """``@/<zid>/@ros2_lv/MS/<key>/<type>/<qos>``: this session writes topic ``name`` from Zenoh
    to ROS subscribers with ``qos``. Raises as :func:`publisher_token`."""
    qos_part = encode_qos(qos, keyless=keyless, user_data=user_data)
    return f"{_token(zid, 'MS', name, type_name, namespace)}/{qos_part}"


def service_server_token(zid: str, name: str, type_name: str, *, namespace: str = "/") -> str:
    """``@/<zid>/@ros2_lv/SS/<key>/<type>``: a ROS service server of ``name`` (``pkg/srv/T``)
    answers through this session. Raises as :func:`publisher_token`."""
    return _token(zid, "SS", name, type_name, namespace)


def service_client_token(zid: str, name: str, type_name: str, *, namespace: str = "/") -> str:
    """``@/<zid>/@ros2_lv/SC/<key>/<type>``: ROS clients of ``name`` call through this session."""
    return _token(zid, "SC", name, type_name, namespace)


def action_server_token(zid: str, name: str, type_name: str, *, namespace: str = "/") -> str:
    """``@/<zid>/@ros2_lv/AS/<key>/<type>``: a ROS action server of ``name`` (``pkg/action/T``)."""
    return _token(zid, "AS", name, type_name, namespace)


def action_client_token(zid: str, name: str, type_name: str, *, namespace: str = "/") -> str:
    """``@/<zid>/@ros2_lv/AC/<key>/<type>``: ROS action clients of ``name`` call through here."""
    return _token(zid, "AC", name, type_name, namespace)


@dataclass(frozen=True)
class Ros2Token:
    """A parsed liveliness token: who declared it, what kind of route, for which ROS 2 name and
    type, and (``MP``/``MS`` only) with which QoS."""

    zid: str
    kind: TokenKind
    name: str
    type_name: str
    qos: DecodedQos | None = None


def parse_token(key: str, *, namespace: str = "/") -> Ros2Token | None:
    """Parse a token of any kind above; None for a key of another shape or a QoS that does not
    parse (a foreign token is skipped, never fatal)."""
    parts = key.split("/")
    if len(parts) < 6 or parts[0] != "@" or parts[2] != _PLUGIN_CHUNK or parts[3] not in _KINDS:
        return None
    kind = parts[3]
    expected = 7 if kind in _WITH_QOS else 6
    if len(parts) != expected:
        return None
    qos = None
    if kind in _WITH_QOS:
        try:
            qos = decode_qos(parts[6])
        except ConfigError:
            return None
    name = key_to_name(unescape(parts[4]), namespace=namespace)
    return Ros2Token(zid=parts[1], kind=kind, name=name, type_name=unescape(parts[5]), qos=qos)


def token_pattern(kind: TokenKind, name: str | None = None, *, namespace: str = "/") -> str:
    """A key expression matching every ``kind`` token (of ``name`` only, when given) of any
    session, for a liveliness subscriber.

    Raises:
        InvalidTopicName: ``name`` is not a valid absolute name.
    """
    key = "*" if name is None else escape(name_to_key(name, namespace=namespace))
    tail = "/*/*" if kind in _WITH_QOS else "/*"
    return f"@/*/{_PLUGIN_CHUNK}/{kind}/{key}{tail}"
