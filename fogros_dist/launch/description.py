"""``FogLaunchDescription``: a LaunchDescription that names the deployment of the CloudNodes in it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from launch.action import Action
from launch.actions import GroupAction, RegisterEventHandler, TimerAction

from fogros_dist.deploy.state import validate_deployment_name
from fogros_dist.launch.cloud_node import CloudNode
from fogros_dist.launch.collector import launch_deployments, unique_deployment_name
from launch import LaunchDescription

__all__ = ["FogLaunchDescription"]


class FogLaunchDescription(LaunchDescription):  # type: ignore[misc]
    """Like ``LaunchDescription``; the CloudNodes in it form one deployment.

    That is every CloudNode launch reaches inside it: directly, in a ``GroupAction``, or in a launch
    file it includes (unless that file is a FogLaunchDescription of its own). Everything else
    launches here as usual. ``deployment`` names the deployment (default ``launch-<pid>-<n>``,
    unique in this process); it shows in `fogros-dist list` and `ros2 fogdist list`.
    ``workspace`` is the robot's colcon workspace the nodes' packages come from (default: the
    overlay this launch runs in).
    """

    def __init__(
        self,
        initial_entities: Iterable[Any] | None = None,
        *,
        deployment: str | None = None,
        workspace: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(initial_entities, **kwargs)
        self.fog_deployment_name = (
            validate_deployment_name(deployment) if deployment is not None else unique_deployment_name()
        )
        self.fog_workspace = str(workspace or "")

    def visit(self, context: Any) -> list[Any] | None:
        """The entities, between actions that make CloudNodes reached meanwhile join this deployment."""
        entities = list(super().visit(context) or [])
        # CloudNodes seen from here (in groups, timers, event handlers) join this deployment even if
        # launch reaches them later; those in included files join while the include is visited.
        _claim(entities, self.fog_deployment_name)
        name = self.fog_deployment_name
        return [
            _EnterDeployment(name=name, workspace=self.fog_workspace),
            *entities,
            _LeaveDeployment(name=name),
        ]


def _claim(entities: Iterable[Any], name: str) -> None:
    for entity in entities:
        if isinstance(entity, CloudNode):
            if entity.fog_deployment is None:
                entity.fog_deployment = name
        elif isinstance(entity, FogLaunchDescription):
            continue  # it names its own
        elif isinstance(entity, LaunchDescription):
            _claim(entity.describe_sub_entities(), name)
        elif isinstance(entity, GroupAction):
            _claim(entity.get_sub_entities(), name)
        elif isinstance(entity, TimerAction | RegisterEventHandler):
            for _condition, sub in entity.describe_conditional_sub_entities():
                _claim(sub, name)


class _EnterDeployment(Action):  # type: ignore[misc]
    def __init__(self, *, name: str, workspace: str) -> None:
        super().__init__()
        self._name = name
        self._workspace = workspace

    def execute(self, context: Any) -> None:
        launch_deployments(context).enter(self._name, workspace=self._workspace)


class _LeaveDeployment(Action):  # type: ignore[misc]
    def __init__(self, *, name: str) -> None:
        super().__init__()
        self._name = name

    def execute(self, context: Any) -> None:
        launch_deployments(context).leave(self._name)
