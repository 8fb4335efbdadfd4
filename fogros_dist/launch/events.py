"""Launch events a user can hook with ``RegisterEventHandler`` (e.g. start robot nodes once up)."""

from __future__ import annotations

from launch.event import Event

__all__ = ["DeploymentDown", "DeploymentFailed", "DeploymentUp"]


class DeploymentUp(Event):  # type: ignore[misc]
    """Every machine is provisioned, bridged, and its nodes started."""

    name = "fogros_dist.launch.events.DeploymentUp"

    def __init__(self, *, deployment: str) -> None:
        super().__init__()
        self.deployment = deployment


class DeploymentFailed(Event):  # type: ignore[misc]
    """`up` failed; ``error`` is the one-line reason."""

    name = "fogros_dist.launch.events.DeploymentFailed"

    def __init__(self, *, deployment: str, error: str) -> None:
        super().__init__()
        self.deployment = deployment
        self.error = error


class DeploymentDown(Event):  # type: ignore[misc]
    """Everything the deployment created has been stopped and released."""

    name = "fogros_dist.launch.events.DeploymentDown"

    def __init__(self, *, deployment: str) -> None:
        super().__init__()
        self.deployment = deployment
