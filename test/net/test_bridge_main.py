"""The bridge process: a real subprocess, a spec file, SIGTERM, exit codes, final stats."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zenoh
from net_test_helpers import DEPLOYMENT, STRING, TIMEOUT, Inbox, free_tcp_port, string_cdr, wait_for

from fogros_dist.net.bridge import Bridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import BridgeRunSpec, TopicSpec, to_json

CHATTER = TopicSpec(name="/chatter", type=STRING)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Bridge processes started by a test; any still running afterwards is killed by its PID."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _start(spec_path: Path, processes: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    return proc


def test_bridge_process_forwards_stops_on_sigterm_and_writes_final_stats(
    tmp_path: Path,
    new_domain_id: Callable[[], int],
    processes: list[subprocess.Popen[str]],
    types: MessageTypes,
) -> None:
    endpoint = f"tcp/127.0.0.1:{free_tcp_port()}"
    stats_path = tmp_path / "machine-stats.json"
    machine = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="machine",
        machine="gpu",
        listen=(endpoint,),
        inbound=(CHATTER,),
        domain_id=new_domain_id(),
        graph="dds",
        stats_path=str(stats_path),
    )
    spec_path = tmp_path / "bridge.json"
    spec_path.write_text(to_json(machine))
    proc = _start(spec_path, processes)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == (
        f"bridge ready: machine gpu listen={endpoint} connect=- topics out=[] in=[/chatter]"
    ), proc.stderr.read() if proc.stderr else ""
    assert stats_path.exists()  # the stats file appears when the bridge is ready

    # An in-process robot bridge on another domain feeds it one message.
    robot = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="robot",
        machine="robot",
        connect=(endpoint,),
        outbound=(CHATTER,),
        domain_id=new_domain_id(),
    )
    with (
        DdsGraph(robot.domain_id) as graph,
        DdsGraph(robot.domain_id) as app,
        DdsGraph(machine.domain_id) as far,
    ):
        inbox = Inbox()
        subscription = far.subscribe(CHATTER, inbox)
        session = zenoh.open(config_for(robot))
        try:
            with Bridge(spec=robot, graph=graph, session=session) as bridge:
                bridge.start(peer_timeout=TIMEOUT)
                publisher = app.publisher(CHATTER)
                assert wait_for(lambda: publisher.matched_count() == 1)
                assert wait_for(lambda: subscription.matched_count() == 1)
                cdr = string_cdr(types, "through a bridge process")
                publisher.publish(cdr)
                assert inbox.get() == cdr
        finally:
            session.close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 0
    final = json.loads(stats_path.read_text())
    assert [(t["topic"], t["direction"], t["messages"]) for t in final["topics"]] == [
        ("/chatter", "inbound", 1)
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"bridge spec file '.*missing.json' does not exist"),
        ("{not json", r"bridge spec file '.*' is not JSON \(Expecting property name"),
        (
            json.dumps({"deployment": "d", "side": "robot", "machine": "m", "colour": 1}),
            r"unknown field 'colour'",
        ),
        (
            json.dumps({"deployment": "d", "side": "left", "machine": "m"}),
            r"BridgeRunSpec.side: 'left' is not one of",
        ),
        (
            json.dumps({"deployment": "d", "side": "robot", "machine": "m", "listen": ["127.0.0.1:1"]}),
            r"Zenoh endpoint '127.0.0.1:1' is malformed",
        ),
    ],
)
def test_bad_spec_exits_2_with_one_line(
    tmp_path: Path, content: str | None, message: str, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "missing.json"
    if content is not None:
        path = tmp_path / "spec.json"
        path.write_text(content)
    proc = _start(path, processes)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]


def _robot_spec_without_peer(tmp_path: Path, domain_id: int) -> Path:
    spec = BridgeRunSpec(
        deployment=DEPLOYMENT,
        side="robot",
        machine="robot",
        connect=(f"tcp/127.0.0.1:{free_tcp_port()}",),
        outbound=(CHATTER,),
        domain_id=domain_id,
        graph="dds",
        stats_path=str(tmp_path / "robot-stats.json"),
    )
    path = tmp_path / "robot.json"
    path.write_text(to_json(spec))
    return path


def test_unreachable_peer_exits_1_with_one_line(
    tmp_path: Path, new_domain_id: Callable[[], int], processes: list[subprocess.Popen[str]]
) -> None:
    path = _robot_spec_without_peer(tmp_path, new_domain_id())
    proc = subprocess.Popen(
        [sys.executable, "-m", "fogros_dist.net.bridge_main", "--spec", str(path), "--peer-timeout", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, stderr
    assert stdout == ""
    # INFO lines come first (start-up progress); the error is the last line, with no traceback.
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: robot bridge reached 0 of 1 peer bridge(s) within 0.5 s "
        f"(connect={json.loads(path.read_text())['connect'][0]}): check that the machine bridge runs "
        "and that its port is reachable from here"
    )
    assert not (tmp_path / "robot-stats.json").exists()  # never ready, so no readiness file


def test_sigterm_while_waiting_for_the_peer_stops_cleanly(
    tmp_path: Path, new_domain_id: Callable[[], int], processes: list[subprocess.Popen[str]]
) -> None:
    path = _robot_spec_without_peer(tmp_path, new_domain_id())
    proc = _start(path, processes)
    # The bridge logs when it starts waiting (long after installing its signal handlers).
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting up to 20 s for 1 peer bridge(s)" in line, line
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=TIMEOUT)  # far less than the default 20 s peer timeout
    assert proc.returncode == 0, stderr
