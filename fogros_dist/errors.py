"""One error hierarchy for fogros_dist.

Every message states the rule, the bad value and the fix, in one line, so the CLI and the launch
adapters can print it as-is (the traceback only at debug verbosity).
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "Cancelled",
    "ConfigError",
    "DeploymentError",
    "FogError",
    "InvalidTopicName",
    "MissingDependency",
    "MissingExecutable",
    "ProcessFailed",
    "ProvisionError",
    "UnknownDeployment",
    "UnknownMessageType",
    "UnknownProvider",
]


class FogError(Exception):
    """Root of every error fogros_dist raises on purpose; its text is meant for the user."""


class ConfigError(FogError, ValueError):
    """A spec, a file or an argument is invalid."""


class UnknownProvider(ConfigError):
    """A machine names a provider that is not registered."""


class UnknownMessageType(ConfigError):
    """A topic names a message type that the chosen ROS distribution does not define."""


class InvalidTopicName(ConfigError):
    """A topic name breaks the ROS 2 naming rules."""


class MissingDependency(FogError, ImportError):
    """An optional Python package needed for the requested feature is not installed."""


class MissingExecutable(FogError):
    """A node's package/executable cannot be found on the machine that should run it."""


class DeploymentError(FogError):
    """A deployment step failed (plan, provision, start, bridge, teardown)."""


class UnknownDeployment(DeploymentError):
    """No deployment with that name is recorded."""


class ProvisionError(DeploymentError):
    """A provider could not create, reach or terminate a machine."""


class Cancelled(DeploymentError):
    """Stopped on request (Ctrl-C, SIGTERM, `fogros-dist down`) before it finished; what it had
    created is torn down by whoever asked."""


class ProcessFailed(DeploymentError):
    """A supervised process exited with a non-zero code; carries its stderr tail."""

    def __init__(self, message: str, *, exit_code: int | None, stderr_tail: tuple[str, ...]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail


class BridgeError(FogError):
    """The Zenoh bridge or a ROS graph adapter could not be set up."""
