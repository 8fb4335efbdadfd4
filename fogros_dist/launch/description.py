"""``FogLaunchDescription``: a LaunchDescription that sends its CloudNodes to fogros_dist machines."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from fogros_dist.launch.actions import FogDeployment
from fogros_dist.launch.cloud_node import CloudNode
from launch import LaunchDescription

__all__ = ["FogLaunchDescription"]


class FogLaunchDescription(LaunchDescription):  # type: ignore[misc]
    """Like ``LaunchDescription``; CloudNode entities become one deployment action.

    Everything else launches here as usual. ``deployment`` names the deployment (default
    ``launch-<pid>``); it shows in `fogros-dist list` and `ros2 fogdist list`.
    """

    def __init__(
        self, initial_entities: Iterable[Any] | None = None, *, deployment: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(initial_entities, **kwargs)
        self.fog_deployment_name = deployment or f"launch-{os.getpid()}"

    def visit(self, context: Any) -> list[Any] | None:
        """Return the local entities plus one FogDeployment for every CloudNode."""
        entities = list(super().visit(context) or [])
        cloud = [e for e in entities if isinstance(e, CloudNode)]
        if not cloud:
            return entities
        for node in cloud:
            node.fog_claimed = True
        local = [e for e in entities if not isinstance(e, CloudNode)]
        return [*local, FogDeployment(name=self.fog_deployment_name, cloud_nodes=cloud)]
