"""``FogDeployment``: the launch action that brings a deployment up and tears it down on shutdown.

The first CloudNode of a deployment returns it; it starts the deployment on the next turn of the
event loop, when launch has visited the whole description and every CloudNode has joined.
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
from typing import Any

from launch.action import Action
from launch.actions import RegisterEventHandler
from launch.event_handlers import OnShutdown

from fogros_dist.cli.output import PrefixedOutput, print_stage
from fogros_dist.deploy.engine import Deployment
from fogros_dist.errors import Cancelled, FogError
from fogros_dist.launch.collector import DeploymentCollector
from fogros_dist.launch.events import DeploymentDown, DeploymentFailed, DeploymentUp

__all__ = ["FogDeployment"]


class FogDeployment(Action):  # type: ignore[misc]
    """Provision the collected CloudNodes' machines, start the nodes there and bridge their topics."""

    def __init__(self, *, collector: DeploymentCollector, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._collector = collector
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
        """Schedule `up` for the next turn of the loop, and register the teardown."""
        loop: asyncio.AbstractEventLoop = context.asyncio_loop
        # A task's first step runs on the next turn of the loop: after this visit pass, in which
        # the deployment's other CloudNodes join it.
        self._future = loop.create_task(self._start(context, loop))
        # SIGTERM/SIGQUIT make launch cancel its task without a Shutdown event: notice the loop
        # stopping, so the deployment is torn down then too instead of being left running.
        threading.Thread(target=self._watch_loop, args=(loop,), name="fog-launch-watch", daemon=True).start()
        atexit.register(self._at_exit)
        self._shutdown_on_sigterm(context, loop)
        return [RegisterEventHandler(OnShutdown(on_shutdown=self._on_shutdown))]

    async def _start(self, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        if self._stop.is_set() or context.is_shutdown:
            # Launch is already shutting down (another entity failed): start nothing.
            self._collector.cleanup()
            return
        try:
            spec = self._collector.close()
        except FogError as err:
            context.emit_event_sync(DeploymentFailed(deployment=self._collector.name, error=str(err)))
            raise
        self._deployment = Deployment(spec, reporter=print_stage, output=PrefixedOutput())
        await loop.run_in_executor(None, self._run, context, loop)

    def _watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.wait(0.5):
            if not loop.is_running():
                self._stop.set()

    def _run(self, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        assert self._deployment is not None
        name = self._deployment.spec.name
        try:
            self._deployment.up()
        except BaseException as err:
            # `up` has torn down what it had made; nothing is left for the shutdown to stop.
            with self._teardown_lock:
                self._torn_down = True
            self._collector.cleanup()
            if isinstance(err, Cancelled):
                # Ctrl-C or SIGTERM while provisioning: launch is shutting down, not failing.
                return
            if isinstance(err, FogError):
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
        # A Ctrl-C during provisioning: `up` gives up within a second and tears down what it made.
        self._deployment.cancel()
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
        if self._deployment is not None:
            self._deployment.cancel()
        if self._up_done.is_set():
            self._teardown_once()

    def _teardown_once(self) -> None:
        # Shutdown handler and supervision thread may both get here; the second waits for the first.
        with self._teardown_lock:
            if self._torn_down or self._deployment is None:
                return
            self._deployment.down()
            self._torn_down = True
            self._collector.cleanup()

    @staticmethod
    def _emit(context: Any, loop: asyncio.AbstractEventLoop, event: Any) -> None:
        loop.call_soon_threadsafe(context.emit_event_sync, event)
