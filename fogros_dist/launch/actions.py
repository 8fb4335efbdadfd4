"""``FogDeployment``: the launch action that brings a deployment up and tears it down on shutdown.

Provisioning is long work, so it runs in an executor and the action returns its asyncio future
(launch waits on it and reports its failure in one line, exit code 1). Progress and remote output
are printed with ``[cloud:<machine>]`` prefixes; events announce up, failure and down.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from launch.action import Action
from launch.actions import RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

from fogros_dist.cli.output import PrefixedOutput, print_stage
from fogros_dist.deploy.engine import Deployment
from fogros_dist.errors import ConfigError, FogError
from fogros_dist.launch.events import DeploymentDown, DeploymentFailed, DeploymentUp
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, OptionValue

if TYPE_CHECKING:
    from fogros_dist.launch.cloud_node import CloudNode

__all__ = ["FogDeployment"]


class FogDeployment(Action):  # type: ignore[misc]
    """Provision the CloudNodes' machines, start the nodes there and bridge their topics."""

    def __init__(self, *, name: str, cloud_nodes: Sequence[CloudNode], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._name = name
        self._cloud_nodes = tuple(cloud_nodes)
        self._deployment: Deployment | None = None
        self._future: asyncio.Future[None] | None = None
        self._stop = threading.Event()
        self._up_done = threading.Event()
        self._teardown_lock = threading.Lock()
        self._torn_down = False

    def get_asyncio_future(self) -> asyncio.Future[None] | None:
        """Launch waits on this: provisioning and supervision until shutdown."""
        return self._future

    def execute(self, context: Any) -> list[Any]:
        """Resolve substitutions, start `up` in an executor, and register the teardown."""
        spec = self._spec(context)
        self._deployment = Deployment(spec, reporter=print_stage, output=PrefixedOutput())
        loop: asyncio.AbstractEventLoop = context.asyncio_loop
        self._future = loop.run_in_executor(None, self._run, context, loop)
        # SIGTERM/SIGQUIT make launch cancel its task without a Shutdown event: notice the loop
        # stopping, so the deployment is torn down then too instead of being left running.
        threading.Thread(target=self._watch_loop, args=(loop,), name="fog-launch-watch", daemon=True).start()
        atexit.register(self._at_exit)
        self._shutdown_on_sigterm(context, loop)
        return [RegisterEventHandler(OnShutdown(on_shutdown=self._on_shutdown))]

    def _watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.wait(0.5):
            if not loop.is_running():
                self._stop.set()

    def _run(self, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        assert self._deployment is not None
        name = self._deployment.spec.name
        try:
            self._deployment.up()
        except FogError as err:
            self._emit(context, loop, DeploymentFailed(deployment=name, error=str(err)))
            raise
        finally:
            self._up_done.set()
        self._emit(context, loop, DeploymentUp(deployment=name))
        self._deployment.wait(self._stop)
        self._teardown_once()

    def _on_shutdown(self, event: Any, context: Any) -> None:
        del event
        self._stop.set()
        if self._deployment is None:
            return
        # A Ctrl-C during provisioning: let `up` finish (or fail and clean itself) before teardown.
        self._up_done.wait()
        self._teardown_once()
        context.emit_event_sync(DeploymentDown(deployment=self._deployment.spec.name))

    @staticmethod
    def _shutdown_on_sigterm(context: Any, loop: asyncio.AbstractEventLoop) -> None:
        # Where SIGTERM would simply kill `ros2 launch`, turn it into a launch Shutdown, so that
        # `kill`, systemd and container stops tear the deployment down like Ctrl-C does.
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        from launch.events import Shutdown

        def on_sigterm() -> None:
            context.emit_event_sync(Shutdown(reason="SIGTERM"))

        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    def _at_exit(self) -> None:
        # The interpreter is exiting without a Shutdown event (launch cancelled by SIGTERM).
        self._stop.set()
        if self._up_done.is_set():
            self._teardown_once()

    def _teardown_once(self) -> None:
        # Shutdown handler and supervision thread may both get here; the second waits for the first.
        with self._teardown_lock:
            if self._torn_down or self._deployment is None:
                return
            self._deployment.down()
            self._torn_down = True

    @staticmethod
    def _emit(context: Any, loop: asyncio.AbstractEventLoop, event: Any) -> None:
        loop.call_soon_threadsafe(context.emit_event_sync, event)

    def _spec(self, context: Any) -> DeploymentSpec:
        machines: dict[str, MachineSpec] = {}
        nodes = []
        for cloud in self._cloud_nodes:
            machine = cloud.fog_machine
            known = machines.setdefault(machine.name, machine)
            if known != machine:
                msg = (
                    f"two different machines are both named {machine.name!r}: give each machine its own name"
                )
                raise ConfigError(msg)
            package = _text(context, cloud.fog_package)
            executable = _text(context, cloud.fog_executable)
            nodes.append(
                NodeSpec(
                    name=_text(context, cloud.fog_name) if cloud.fog_name is not None else executable,
                    package=package,
                    executable=executable,
                    machine=machine.name,
                    arguments=tuple(_text(context, a) for a in cloud.fog_arguments),
                    parameters=_parameters(context, cloud.fog_parameters),
                    remappings=tuple((_text(context, a), _text(context, b)) for a, b in cloud.fog_remappings),
                    topics_in=cloud.fog_topics_in,
                    topics_out=cloud.fog_topics_out,
                )
            )
        return DeploymentSpec(name=self._name, machines=tuple(machines.values()), nodes=tuple(nodes))


def _text(context: Any, value: Any) -> str:
    return str(perform_substitutions(context, normalize_to_list_of_substitutions(value)))


def _parameters(context: Any, parameters: Sequence[Any]) -> tuple[tuple[str, OptionValue], ...]:
    pairs: list[tuple[str, OptionValue]] = []
    for item in parameters:
        if not isinstance(item, dict):
            msg = (
                f"CloudNode parameters {item!r}: only dictionaries of scalar values are supported "
                f"for cloud nodes (parameter files are not shipped yet)"
            )
            raise ConfigError(msg)
        for key, value in item.items():
            if isinstance(value, bool | int | float):
                pairs.append((_text(context, key), value))
            else:
                pairs.append((_text(context, key), _text(context, value)))
    return tuple(pairs)
