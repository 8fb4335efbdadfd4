"""Faults on purpose, on a Local deployment with real processes: a second `up` of a running name,
kill -9 of the node and of each bridge, a stop requested in the middle of `up`. Each one leaves
the record true: nothing of another deployment touched, a failed deployment kept with its
reason and released, a restarted bridge carrying messages again, a cancelled `up` leaving
nothing behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import assert_failed_and_released, edge_deployment, edges_round_trip

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import Cancelled, DeploymentError
from fogros_dist.providers.local.process import process_alive
from fogros_dist.spec import DeploymentSpec, MachineSpec, ProcessRecord


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "home")


def _spec(name: str) -> DeploymentSpec:
    return edge_deployment(name, MachineSpec(name="gpu"))


class Supervised:
    """A deployment up and supervised on a thread, as `fogros-dist up` does in the foreground."""

    def __init__(self, spec: DeploymentSpec, store: StateStore, robot_domain: int) -> None:
        self.stages: list[Stage] = []
        self.deployment = Deployment(
            spec, store=store, reporter=self.stages.append, robot_domain_id=robot_domain
        )
        self.deployment.up()
        self.stop = threading.Event()
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.deployment.wait(self.stop)))
        self.thread.start()

    def record(self, name: str) -> ProcessRecord:
        return next(r for r in self.deployment.state.processes if r.name == name)

    def wait_for_stage(self, stage: str, timeout: float = 30.0) -> Stage:
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.stages if s.stage == stage]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, [s.line() for s in self.stages]
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.deployment.down()


@pytest.fixture
def supervised(store: StateStore, robot_domain: int) -> Iterator[Supervised]:
    running = Supervised(_spec("faults"), store, robot_domain)
    try:
        yield running
    finally:
        running.finish()


def _bright(reply: object) -> int:
    return int(np.asarray(reply.data).max())  # type: ignore[attr-defined]


def test_a_second_up_of_a_running_name_is_refused_and_touches_nothing(
    supervised: Supervised, store: StateStore, robot_domain: int
) -> None:
    before = store.load("faults")
    with pytest.raises(
        DeploymentError, match=r"^deployment 'faults' is already recorded: run 'fogros-dist down"
    ):
        Deployment(_spec("faults"), store=store, robot_domain_id=robot_domain).up()
    # The refused `up` changed nothing: the same record, every process alive, still answering.
    after = store.load("faults")
    assert after.processes == before.processes
    assert after.supervisor == before.supervisor
    assert all(process_alive(r) for r in after.processes)
    assert _bright(edges_round_trip(robot_domain)) == 255


def test_the_node_killed_fails_the_deployment_which_keeps_its_reason_released(
    supervised: Supervised, store: StateStore
) -> None:
    node = supervised.record("edges")
    others = [r for r in supervised.deployment.state.processes if r.name != "edges"]
    os.kill(node.pid, signal.SIGKILL)
    supervised.thread.join(timeout=30)
    assert supervised.code == [1]
    report = supervised.deployment.down()
    assert report.failure == "node 'edges' on machine 'gpu' was stopped by SIGKILL"
    assert_failed_and_released(store, "faults", "node 'edges' on machine 'gpu' was stopped by SIGKILL")
    assert not any(process_alive(r) for r in others)
    # The next `up` of the name replaces the failed record.
    again = Deployment(_spec("faults"), store=store, robot_domain_id=store.load("faults").robot_domain_id)
    again.up()
    try:
        assert store.load("faults").status == "running"
    finally:
        again.down()
    assert store.names() == []


@pytest.mark.parametrize("bridge", ["bridge", "robot-bridge"])
def test_a_bridge_killed_is_started_again_and_carries_messages_again(
    supervised: Supervised, store: StateStore, robot_domain: int, bridge: str
) -> None:
    assert _bright(edges_round_trip(robot_domain)) == 255
    old = supervised.record(bridge)
    os.kill(old.pid, signal.SIGKILL)
    supervised.wait_for_stage("restarted")
    new = supervised.record(bridge)
    assert new.pid != old.pid
    assert process_alive(new)
    assert _bright(edges_round_trip(robot_domain, timeout=60)) == 255
    state = store.load("faults")
    assert state.status == "running"
    assert [(e.name, e.exit_code) for e in state.exits] == [(bridge, -signal.SIGKILL)]
    assert not supervised.code


def test_a_stop_requested_during_up_tears_down_and_forgets_the_deployment(
    store: StateStore, robot_domain: int
) -> None:
    stages: list[Stage] = []
    deployment: Deployment

    def report(stage: Stage) -> None:
        stages.append(stage)
        # As Ctrl-C or `fogros-dist down` would, the moment the machine is ready.
        if stage.stage == "ready":
            deployment.cancel()

    deployment = Deployment(_spec("stopped"), store=store, reporter=report, robot_domain_id=robot_domain)
    with pytest.raises(
        Cancelled, match=r"^deployment 'stopped': stopped on request while starting the bridges$"
    ):
        deployment.up()
    # Stopped on request is not a failure: nothing is left, not even a record.
    assert store.names() == []
    assert [s.stage for s in stages][-1] == "down"
