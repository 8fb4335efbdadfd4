"""ROS 2 message types from ``rosbags`` typestores: names, RIHS01 hashes and CDR.

No ROS 2 installation is needed: ``rosbags`` ships the standard message definitions of each
distribution, and fogros_dist ships the stock service and action definitions the bridge needs
(``ros/stock_interfaces/``), registered the first time one of their messages is resolved. Any
other interface (a robot's own package, or one rosbags lacks) is added from its definition with
:meth:`MessageTypes.register_interface`; at deploy time ``ros/interfaces.py`` finds those
definitions and every bridge registers them from its spec.
"""

from __future__ import annotations

import difflib
import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.ros.interface_text import interface_of, referenced_types, split_interface_name, types_of
from fogros_dist.ros.interfaces import stock_definition
from fogros_dist.ros.names import dds_type_name, validate_type_name
from fogros_dist.spec import InterfaceDef

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

__all__ = ["SUPPORTED_DISTROS", "MessageType", "MessageTypes"]

SUPPORTED_DISTROS: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}

# rmw implementations put "typehash=RIHS01_...;" in endpoint USER_DATA from Iron on (REP 2011);
# Humble predates type hashes and sends none.
_DISTROS_WITH_TYPE_HASH = frozenset({"iron", "jazzy", "kilted"})


@dataclass(frozen=True, kw_only=True)
class MessageType:
    """One ROS 2 message type as the wire sees it.

    Attributes:
        name: the ROS 2 name, ``sensor_msgs/msg/Image``.
        dds_name: the DDS type name rmw uses, ``sensor_msgs::msg::dds_::Image_``.
        type_hash: the RIHS01 hash string, ``RIHS01_<64 hex digits>``.
        distro: the ROS 2 distribution the definition comes from.
        hash_on_wire: whether that distribution's rmw announces ``type_hash`` in USER_DATA.
    """

    name: str
    dds_name: str
    type_hash: str
    distro: str
    hash_on_wire: bool

    @property
    def user_data(self) -> bytes:
        """The endpoint USER_DATA rmw_cyclonedds_cpp sends for this type (empty before Iron)."""
        return f"typehash={self.type_hash};".encode() if self.hash_on_wire else b""


@functools.cache
def _standard_typestore(distro: str) -> Typestore:
    # Shared and never mutated: register_msg() copies before adding anything.
    return get_typestore(SUPPORTED_DISTROS[distro])


class MessageTypes:
    """The message types of one ROS 2 distribution.

    Args:
        distro: ``humble``, ``iron``, ``jazzy`` or ``kilted``.

    Raises:
        ConfigError: the distribution is not supported.
    """

    def __init__(self, distro: str = "jazzy") -> None:
        if distro not in SUPPORTED_DISTROS:
            msg = f"ROS 2 distro {distro!r} is not supported: use one of {', '.join(SUPPORTED_DISTROS)}"
            raise ConfigError(msg)
        self._distro = distro
        self._store: Typestore = _standard_typestore(distro)
        self._private = False
        self._resolved: dict[str, MessageType] = {}
        # Bridge threads resolve concurrently; registering replaces the store's dictionaries.
        self._register_lock = threading.RLock()

    @property
    def distro(self) -> str:
        """The ROS 2 distribution these types come from."""
        return self._distro

    @property
    def typestore(self) -> Typestore:
        """The underlying ``rosbags`` typestore (read it; add types with :meth:`register_interface`)."""
        return self._store

    def names(self) -> tuple[str, ...]:
        """Every message type name known here, sorted."""
        return tuple(sorted(n for n in self._store.fielddefs if "/msg/" in n))

    def resolve(self, type_name: str) -> MessageType:
        """Look up ``type_name`` (``pkg/msg/Type``).

        Raises:
            UnknownMessageType: the name is malformed or the distribution does not define it; the
                message suggests close matches.
        """
        found = self._resolved.get(type_name)
        if found is not None:
            return found
        try:
            validate_type_name(type_name)
        except UnknownMessageType as err:
            # 'pkg/Type' already gets its fix ('pkg/msg/Type') from validate_type_name.
            hint = "" if type_name.count("/") == 1 else self._suggest(type_name)
            raise UnknownMessageType(f"{err}{hint}") from None
        if type_name not in self._store.fielddefs and not self._register_stock(type_name):
            pkg = type_name.split("/", 1)[0]
            suggestion = self.suggestion(type_name)
            msg = (
                f"message type {type_name!r} is not defined in ROS 2 {self._distro}{suggestion}"
                f": check the spelling; for a package's own type, build package {pkg!r} and source "
                "its workspace (install/setup.bash) before the launch, so its definition is found"
            )
            raise UnknownMessageType(msg)
        found = MessageType(
            name=type_name,
            dds_name=dds_type_name(type_name),
            type_hash=self._store.hash_rihs01(type_name),
            distro=self._distro,
            hash_on_wire=self._distro in _DISTROS_WITH_TYPE_HASH,
        )
        self._resolved[type_name] = found
        return found

    def message_class(self, type_name: str) -> type[Any]:
        """The ``rosbags`` dataclass for ``type_name``; build messages with it for :meth:`serialize`.

        Raises:
            UnknownMessageType: as :meth:`resolve`.
        """
        self.resolve(type_name)
        return self._store.types[type_name]

    def field_definitions(self, type_name: str) -> tuple[Any, Any]:
        """The ``rosbags`` field definitions ``(constants, fields)`` of ``type_name``.

        Raises:
            UnknownMessageType: as :meth:`resolve`.
        """
        self.resolve(type_name)
        consts, fields = self._store.fielddefs[type_name]
        return consts, fields

    def serialize(self, type_name: str, msg: object) -> bytes:
        """CDR-encode ``msg`` (little endian, with the 4-byte encapsulation header).

        Raises:
            UnknownMessageType: as :meth:`resolve`.
            ConfigError: ``msg`` does not fit ``type_name``.
        """
        self.resolve(type_name)
        try:
            return bytes(self._store.serialize_cdr(msg, type_name))
        except Exception as err:  # rosbags raises whatever its generated code hits
            msg_text = (
                f"cannot serialize a {type(msg).__name__} object as {type_name!r} ({err}): "
                f"build it with MessageTypes.message_class({type_name!r})"
            )
            raise ConfigError(msg_text) from err

    def deserialize(self, type_name: str, cdr: bytes | memoryview) -> Any:
        """Decode CDR bytes (with encapsulation header) into a ``rosbags`` message.

        Raises:
            UnknownMessageType: as :meth:`resolve`.
            ConfigError: the bytes are not a ``type_name`` message.
        """
        self.resolve(type_name)
        try:
            return self._store.deserialize_cdr(cdr, type_name)
        except Exception as err:  # truncated or foreign data fails anywhere in generated code
            msg = (
                f"{len(cdr)} bytes do not decode as {type_name!r} ({type(err).__name__}: {err}): "
                "check that publisher and subscriber agree on the type"
            )
            raise ConfigError(msg) from err

    def knows_interface(self, interface_name: str) -> bool:
        """Whether ``pkg/msg|srv|action/T`` is known here without any other definition: the
        distribution's own types, the stock definitions fogros_dist ships, or one registered.

        Raises:
            UnknownMessageType: the name is malformed.
        """
        _pkg, kind, _leaf = split_interface_name(interface_name)
        if kind == "msg":
            if interface_name in self._store.fielddefs:
                return True
        elif any(interface_of(name) == interface_name for name in self._store.fielddefs):
            return True
        return stock_definition(self._distro, interface_name) is not None

    def register_interface(self, definition: InterfaceDef) -> None:
        """Add every message ``definition`` makes (a .srv's request and response, an .action's
        seven messages); the types it uses must be known or added first.

        Raises:
            UnknownMessageType: the definition's name is malformed.
            ConfigError: the text does not parse, uses an unknown type, or clashes with a type of
                the same name.
        """
        self.register_types(types_of(definition), what=definition.name)

    def register_msg(self, type_name: str, definition: str) -> None:
        """Add a message type from its ``.msg`` text (types it uses must be known or added first).

        Args:
            type_name: ``pkg/msg/Type``.
            definition: the contents of ``Type.msg``.

        Raises:
            UnknownMessageType: ``type_name`` is malformed.
            ConfigError: the definition does not parse.
        """
        validate_type_name(type_name)
        try:
            new_types = get_types_from_msg(definition, type_name)
        except TypesysError as err:
            first_line = str(err).splitlines()[0].rstrip(":")
            msg = f"definition of {type_name!r} does not parse ({first_line}): pass the .msg file's text"
            raise ConfigError(msg) from err
        self.register_types(new_types, what=type_name)

    def register_types(self, new_types: dict[str, Any], *, what: str) -> None:
        """Add rosbags type definitions (``{name: (constants, fields)}``) to this instance only.

        Args:
            new_types: the definitions, e.g. from :func:`fogros_dist.ros.interface_text.types_of`.
            what: the interface they come from, for error messages.

        Raises:
            ConfigError: a field uses a type neither known nor among ``new_types``, or a type of
                the same name with another definition exists.
        """
        with self._register_lock:
            for used in sorted(referenced_types(new_types)):
                if used not in self._store.fielddefs and not self._register_stock(used):
                    msg = (
                        f"definition of {what!r} uses {used!r}, which ROS 2 {self._distro} does not "
                        "define: register that type first (or fix the spelling)"
                    )
                    raise ConfigError(msg)
            if not self._private:
                # Copy on first write so the cached standard store stays pristine for everyone else.
                self._store = get_typestore(SUPPORTED_DISTROS[self._distro])
                self._private = True
            try:
                self._store.register(new_types)
            except TypesysError as err:
                msg = f"cannot add {what!r} ({err}): a type of that name with another definition exists"
                raise ConfigError(msg) from err
            for name in new_types:
                self._resolved.pop(name, None)

    def suggestion(self, type_name: str) -> str:
        """`` (did you mean 'a' or 'b'?)`` for the known names closest to ``type_name``, or ""."""
        return self._suggest(type_name)

    def _register_stock(self, type_name: str) -> bool:
        """Register the shipped stock interface ``type_name`` belongs to; whether there was one."""
        try:
            interface = interface_of(type_name)
        except UnknownMessageType:
            return False
        definition = stock_definition(self._distro, interface)
        if definition is None:
            return False
        with self._register_lock:
            if type_name not in self._store.fielddefs:
                self.register_interface(definition)
        return type_name in self._store.fielddefs

    def _suggest(self, type_name: str) -> str:
        # Rank by the type's own name (the package prefix would make every sibling look close),
        # preferring the package the caller named.
        parts = type_name.split("/")
        pkg, leaf = parts[0], parts[-1].lower()
        scored: list[tuple[float, str]] = []
        for name in self.names():
            ratio = difflib.SequenceMatcher(None, leaf, name.rsplit("/", 1)[-1].lower()).ratio()
            if ratio >= 0.75:
                scored.append((ratio + (0.1 if name.split("/", 1)[0] == pkg else 0.0), name))
        close = [name for _, name in sorted(scored, key=lambda s: (-s[0], s[1]))[:3]]
        if not close:
            return ""
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
