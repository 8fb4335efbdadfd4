"""``CloudNode``: a launch_ros ``Node`` that runs on a fogros_dist machine instead of here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from launch_ros.actions import Node

from fogros_dist.deploy.file import topic_from_user
from fogros_dist.errors import ConfigError
from fogros_dist.spec import MachineSpec, TopicSpec

__all__ = ["CloudNode"]

TopicLike = str | TopicSpec | Mapping[str, Any]


class CloudNode(Node):  # type: ignore[misc]
    """A node to offload: the usual ``Node`` arguments plus ``machine`` and the topics to bridge.

    ``topics_in`` are carried robot -> machine, ``topics_out`` machine -> robot; each is
    ``"/name"``, ``"/name:pkg/msg/Type"``, a mapping, or a TopicSpec. Only a
    :class:`~fogros_dist.launch.FogLaunchDescription` can run it.
    """

    def __init__(
        self,
        *,
        machine: object,
        topics_in: Iterable[TopicLike] = (),
        topics_out: Iterable[TopicLike] = (),
        package: Any,
        executable: Any,
        name: Any = None,
        parameters: Sequence[Mapping[str, Any]] | None = None,
        remappings: Iterable[tuple[Any, Any]] | None = None,
        arguments: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(machine, MachineSpec):  # launch files are untyped: check at run time
            msg = (
                f"CloudNode machine={machine!r} is not a machine: use fogros_dist.machines.Local(), "
                f"SSHHost(...) or AWS(...)"
            )
            raise ConfigError(msg)
        super().__init__(
            package=package,
            executable=executable,
            name=name,
            parameters=list(parameters) if parameters is not None else None,
            remappings=remappings,
            arguments=arguments,
            **kwargs,
        )
        self.fog_machine = machine
        self.fog_topics_in = tuple(topic_from_user(t, where="CloudNode topics_in") for t in topics_in)
        self.fog_topics_out = tuple(topic_from_user(t, where="CloudNode topics_out") for t in topics_out)
        # Kept unexpanded: substitutions are resolved when the deployment action executes.
        self.fog_package = package
        self.fog_executable = executable
        self.fog_name = name
        self.fog_parameters = tuple(parameters or ())
        self.fog_remappings = tuple(remappings or ())
        self.fog_arguments = tuple(arguments or ())
        self.fog_claimed = False

    def execute(self, context: Any) -> Any:
        """Refuse to run locally: a CloudNode only runs through FogLaunchDescription."""
        if not self.fog_claimed:
            msg = (
                f"CloudNode {self.fog_executable!r} was not claimed by a FogLaunchDescription: "
                f"return FogLaunchDescription([...]) from generate_launch_description()"
            )
            raise ConfigError(msg)
        return None
