"""Finding the interface definitions a deployment needs and the distribution's stock types lack.

Definitions come from, in this order (the first holding the package wins, so a workspace's own
copy wins over an installed one):

1. the source packages of the workspaces being offloaded (``<pkg dir>/msg|srv|action/T.<kind>``,
   packages found as colcon finds them: ``fogros_dist/workspace/packages.py``);
2. every prefix on ``AMENT_PREFIX_PATH``, as ament installs them
   (``<prefix>/share/<pkg>/msg|srv|action/T.<kind>``).

Within a package the ``.msg``/``.srv``/``.action`` file is read, else the ``.idl`` one. Only the
closure of what is needed is taken (the types asked for and the non-stock types they use,
dependencies first), never every installed type. The result travels as
:class:`~fogros_dist.spec.InterfaceDef` in the deployment spec to every bridge, which adds it with
:func:`register_interfaces`.

The stock service and action definitions the bridge itself uses (parameter services,
``action_msgs/srv/CancelGoal``, the ``std_srvs`` and ``example_interfaces`` ones), which rosbags
does not ship, lie in ``stock_interfaces/<distro>/`` (copied from the ROS 2 repositories at the
distribution's branch; ``SOURCES.txt`` names the commits) and are registered on demand by
:class:`~fogros_dist.ros.types.MessageTypes`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fogros_dist.errors import ConfigError, UnknownMessageType
from fogros_dist.ros.interface_text import interface_of, referenced_types, split_interface_name, types_of
from fogros_dist.spec import InterfaceDef

if TYPE_CHECKING:
    from fogros_dist.ros.types import MessageTypes

__all__ = [
    "InterfaceIndex",
    "needed_interfaces",
    "register_interfaces",
    "stock_definition",
]

Format = Literal["msg", "srv", "action", "idl"]


def stock_definition(distro: str, interface_name: str) -> InterfaceDef | None:
    """The shipped stock definition of ``interface_name`` for ``distro``, or None."""
    try:
        pkg, kind, leaf = split_interface_name(interface_name)
    except UnknownMessageType:
        return None
    return _stock_file(distro, pkg, kind, leaf)


@functools.cache
def _stock_file(distro: str, pkg: str, kind: str, leaf: str) -> InterfaceDef | None:
    resource = resources.files("fogros_dist.ros").joinpath(
        "stock_interfaces", distro, pkg, kind, f"{leaf}.{kind}"
    )
    if not resource.is_file():
        return None
    fmt: Format = "msg" if kind == "msg" else "srv" if kind == "srv" else "action"
    return InterfaceDef(name=f"{pkg}/{kind}/{leaf}", format=fmt, text=resource.read_text(encoding="utf-8"))


@dataclass(kw_only=True)
class InterfaceIndex:
    """Where definitions are looked for: source workspaces first, then installed prefixes.

    Args:
        workspaces: roots of colcon workspaces whose source packages define interfaces.
        prefixes: install prefixes (``AMENT_PREFIX_PATH`` order: the most recently sourced first).
    """

    workspaces: Sequence[Path] = ()
    prefixes: Sequence[Path] = ()
    _packages: dict[Path, dict[str, Path]] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_environment(
        cls, *, workspaces: Iterable[Path] = (), environ: Mapping[str, str] | None = None
    ) -> InterfaceIndex:
        """An index over ``workspaces`` and the prefixes of ``$AMENT_PREFIX_PATH`` (of ``environ``,
        default this process's environment), each named once."""
        env = os.environ if environ is None else environ
        prefixes = [Path(p) for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        return cls(
            workspaces=tuple(dict.fromkeys(Path(w) for w in workspaces)),
            prefixes=tuple(dict.fromkeys(prefixes)),
        )

    def find(self, interface_name: str) -> InterfaceDef | None:
        """The definition of ``pkg/kind/T`` from the first place holding package ``pkg``, or None.

        Raises:
            UnknownMessageType: the name is malformed.
            ConfigError: a workspace's package.xml is invalid, or a definition file is unreadable.
        """
        pkg, kind, leaf = split_interface_name(interface_name)
        for package_dir in self._package_dirs(pkg):
            for fmt in (kind, "idl"):
                path = package_dir / kind / f"{leaf}.{fmt}"
                if path.is_file():
                    return InterfaceDef(name=interface_name, format=_format(fmt), text=_read(path))
        return None

    def package_dirs(self, pkg: str) -> tuple[Path, ...]:
        """Every directory found for package ``pkg``, in search order (for error messages)."""
        return tuple(self._package_dirs(pkg))

    def searched(self) -> str:
        """Where this index looks, in words: ``workspace /ws; prefixes /opt/ros/jazzy, ...``."""
        parts = []
        if self.workspaces:
            parts.append("workspace " + ", ".join(str(w) for w in self.workspaces))
        if self.prefixes:
            parts.append("AMENT_PREFIX_PATH " + ", ".join(str(p) for p in self.prefixes))
        return "; ".join(parts) or "nowhere (no workspace, AMENT_PREFIX_PATH unset)"

    def _package_dirs(self, pkg: str) -> Iterable[Path]:
        for root in self.workspaces:
            found = self._workspace_packages(root).get(pkg)
            if found is not None:
                yield found
        for prefix in self.prefixes:
            share = prefix / "share" / pkg
            if share.is_dir():
                yield share

    def _workspace_packages(self, root: Path) -> dict[str, Path]:
        known = self._packages.get(root)
        if known is None:
            from fogros_dist.workspace.packages import discover_packages

            known = (
                {name: root / p.path for name, p in discover_packages(root).items()} if root.is_dir() else {}
            )
            self._packages[root] = known
        return known


def needed_interfaces(
    type_names: Iterable[str], *, types: MessageTypes, index: InterfaceIndex
) -> tuple[InterfaceDef, ...]:
    """The definitions ``types`` lacks for ``type_names`` (messages such as ``pkg/msg/T`` or
    ``pkg/srv/T_Request``, or interfaces ``pkg/srv/T``, ``pkg/action/T``), with every non-stock
    type they use, dependencies first.

    Raises:
        UnknownMessageType: a type is found nowhere (the message names it, where it looked and
            the fix), or a name is malformed.
        ConfigError: a definition does not parse, or definitions use each other in a cycle.
    """
    ordered: dict[str, InterfaceDef] = {}
    visiting: list[str] = []

    def visit(interface: str, used_by: str | None) -> None:
        if interface in ordered or types.knows_interface(interface):
            return
        if interface in visiting:
            cycle = " -> ".join([*visiting[visiting.index(interface) :], interface])
            msg = f"interface definitions use each other in a cycle ({cycle}): ROS 2 cannot build that either"
            raise ConfigError(msg)
        definition = index.find(interface)
        if definition is None:
            raise UnknownMessageType(_not_found(interface, used_by, types=types, index=index))
        visiting.append(interface)
        for used in sorted(referenced_types(types_of(definition))):
            visit(interface_of(used), interface)
        visiting.pop()
        ordered[interface] = definition

    for name in type_names:
        visit(interface_of(name), None)
    return tuple(ordered.values())


def register_interfaces(types: MessageTypes, definitions: Iterable[InterfaceDef]) -> None:
    """Add ``definitions`` (dependencies first, as :func:`needed_interfaces` orders them) to
    ``types``; one already known with the same fields is left as it is.

    Raises:
        ConfigError: a definition does not parse, uses an unknown type, or clashes with a
            different definition of the same name.
    """
    for definition in definitions:
        types.register_interface(definition)


def _not_found(interface: str, used_by: str | None, *, types: MessageTypes, index: InterfaceIndex) -> str:
    pkg, kind, leaf = split_interface_name(interface)
    what = "message type" if kind == "msg" else f"{'service' if kind == 'srv' else 'action'} type"
    by = f" (used by {used_by!r})" if used_by else ""
    dirs = index.package_dirs(pkg)
    if dirs:
        where = f"package {pkg!r} at {', '.join(str(d) for d in dirs)} has no {kind}/{leaf}.{kind} or .idl"
        fix = f"check the spelling, or add {kind}/{leaf}.{kind} to package {pkg!r}"
    elif any(name.startswith(f"{pkg}/") for name in types.typestore.fielddefs):
        where = f"its stock package {pkg!r} has no such type"
        fix = "check the spelling"
    else:
        where = f"no package {pkg!r} in {index.searched()}"
        fix = (
            f"build package {pkg!r} (colcon build) and source its install/setup.bash before the launch, "
            "or set the deployment's workspace to the colcon workspace holding its source"
        )
    suggestion = types.suggestion(interface) if kind == "msg" else ""
    return f"{what} {interface!r}{by} is not defined in ROS 2 {types.distro}{suggestion} and {where}: {fix}"


def _format(fmt: str) -> Format:
    if fmt == "msg":
        return "msg"
    if fmt == "srv":
        return "srv"
    return "action" if fmt == "action" else "idl"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        msg = f"interface definition {path} is unreadable ({err}): check the file"
        raise ConfigError(msg) from err
