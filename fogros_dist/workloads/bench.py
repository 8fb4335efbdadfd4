"""`fogros-dist bench <workload>`: the serving node on the robot vs offloaded, in one run.

Both phases send the same deterministic requests one at a time and time each request until its
reply arrives on the robot's graph:

- ``robot``: the node runs as a process on the robot's own DDS graph (no bridge);
- ``offloaded``: the node runs on a Local machine, behind the Zenoh bridge, exactly as
  ``CloudNode`` deploys it.

On one machine the two differ only by the bridge; on a real GPU machine the offloaded phase also
gains the faster hardware. DDS stays on loopback throughout.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.robot_graph import isolate_robot_graph
from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import DeploymentError
from fogros_dist.providers.local.process import LocalProcess
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec
from fogros_dist.workloads.base import BenchRequest, Workload

__all__ = ["PhaseResult", "WorkloadBench", "markdown_table", "run_bench", "update_markdown_section"]

FIRST_REPLY_TIMEOUT_S = 90.0
REPLY_TIMEOUT_S = 20.0


@dataclass
class PhaseResult:
    """Latencies of one phase, in milliseconds."""

    phase: str
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0

    def summary(self) -> dict[str, Any]:
        """Median, p99, count and missing replies."""
        values = sorted(self.latencies_ms)
        if not values:
            return {
                "phase": self.phase,
                "count": 0,
                "missing": self.missing,
                "median_ms": None,
                "p99_ms": None,
            }
        p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
        return {
            "phase": self.phase,
            "count": len(values),
            "missing": self.missing,
            "median_ms": round(statistics.median(values), 3),
            "p99_ms": round(p99, 3),
        }


@dataclass
class WorkloadBench:
    """Both phases of one workload's benchmark."""

    workload: str
    requests: int
    phases: list[PhaseResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able results, with the offloaded/robot ratio of medians."""
        summaries = {p.phase: p.summary() for p in self.phases}
        robot = summaries.get("robot", {}).get("median_ms")
        offloaded = summaries.get("offloaded", {}).get("median_ms")
        ratio = round(offloaded / robot, 2) if robot and offloaded else None
        return {"workload": self.workload, "requests": self.requests, "phases": summaries, "ratio": ratio}


class _Requester:
    """Publishes requests on the robot's graph and waits for each matching reply."""

    def __init__(self, workload: Workload, graph: Any) -> None:
        self._workload = workload
        self._graph = graph
        self._publishers: dict[str, Any] = {}
        self._replies: dict[int, float] = {}
        self._arrived = threading.Condition()
        graph.subscribe(workload.reply_topic, self._on_reply)

    def _on_reply(self, cdr: bytes) -> None:
        now = time.perf_counter()
        try:
            key = self._workload.reply_key(cdr)
        except ValueError:
            return
        with self._arrived:
            self._replies[key] = now
            self._arrived.notify_all()

    def send(self, request: BenchRequest) -> float:
        """Publish the request's messages; return the send time."""
        sent = time.perf_counter()
        for topic, cdr in request.messages:
            publisher = self._publishers.get(topic.name)
            if publisher is None:
                publisher = self._publishers[topic.name] = self._graph.publisher(topic)
            publisher.publish(cdr)
        return sent

    def wait(self, key: int, timeout: float) -> float | None:
        """The arrival time of the reply with ``key``, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while key not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._arrived.wait(left)
            return self._replies.pop(key)


def _measure(workload: Workload, graph: Any, requests: list[BenchRequest], phase: str) -> PhaseResult:
    requester = _Requester(workload, graph)
    result = PhaseResult(phase=phase)
    # Warm-up: repeat the first request until the node answers (model load, discovery).
    first = requests[0]
    deadline = time.monotonic() + FIRST_REPLY_TIMEOUT_S
    while True:
        requester.send(first)
        if requester.wait(first.key, 1.0) is not None:
            break
        if time.monotonic() > deadline:
            topic = workload.reply_topic.name
            msg = f"{workload.name} ({phase}): no reply on {topic} within {FIRST_REPLY_TIMEOUT_S:.0f} s"
            raise DeploymentError(msg)
    for request in requests[1:]:
        sent = requester.send(request)
        arrived = requester.wait(request.key, REPLY_TIMEOUT_S)
        if arrived is None:
            result.missing += 1
        else:
            result.latencies_ms.append((arrived - sent) * 1000.0)
    return result


def run_bench(
    workload: Workload,
    *,
    requests: int = 30,
    seed: int = 0,
    model_dir: Path,
    store: StateStore | None = None,
    report: Callable[[str], None] = print,
    reporter: Callable[[Stage], None] | None = None,
) -> WorkloadBench:
    """Measure ``workload``'s node on the robot, then offloaded to a Local machine."""
    from fogros_dist.ros.dds import DdsGraph

    store = store or StateStore()
    domain = isolate_robot_graph(store, prefix="fogros-bench-")
    batch = list(workload.bench_requests(count=requests + 1, seed=seed))
    node_args = workload.node_arguments(model_dir)
    bench = WorkloadBench(workload=workload.name, requests=requests)

    report(f"{workload.name}: node on the robot (no bridge)")
    with tempfile.TemporaryDirectory(prefix="fogros-bench-node-") as tmp:
        node = LocalProcess.start(
            role="node",
            name=workload.executable,
            machine="robot",
            argv=(
                sys.executable,
                "-m",
                "fogros_dist.node_launcher",
                "fogros_dist",
                workload.executable,
                "--",
                *node_args,
            ),
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=Path(tmp),
            log_dir=Path(tmp),
        )
        graph = DdsGraph(domain)
        try:
            bench.phases.append(_measure(workload, graph, batch, "robot"))
        except DeploymentError as err:
            tail = " | ".join(node.stderr_tail(5))
            msg = f"{err}: {tail}"
            raise DeploymentError(msg) from err
        finally:
            graph.close()
            node.stop(grace=5.0)

    report(f"{workload.name}: node offloaded to a Local machine (through the bridge)")
    spec = DeploymentSpec(
        name=f"bench-{workload.name}",
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name=workload.executable,
                package="fogros_dist",
                executable=workload.executable,
                machine="gpu",
                arguments=node_args,
                topics_in=workload.topics_in,
                topics_out=workload.topics_out,
            ),
        ),
    )
    deployment = Deployment(spec, store=store, reporter=reporter, robot_domain_id=domain)
    try:
        deployment.up()
        offloaded_graph = DdsGraph(domain)
        try:
            bench.phases.append(_measure(workload, offloaded_graph, batch, "offloaded"))
        finally:
            offloaded_graph.close()
    finally:
        deployment.down()
    return bench


def markdown_table(results: list[dict[str, Any]], meta: str) -> str:
    """The BENCHMARKS.md table for one or more workloads' results."""
    lines = [
        meta,
        "",
        "| workload | requests | robot median ms | robot p99 ms | offloaded median ms | offloaded p99 ms "
        "| offloaded/robot |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        robot, offloaded = result["phases"]["robot"], result["phases"]["offloaded"]
        lines.append(
            f"| {result['workload']} | {robot['count']} | {robot['median_ms']} | {robot['p99_ms']} | "
            f"{offloaded['median_ms']} | {offloaded['p99_ms']} | {result['ratio']} |"
        )
    return "\n".join(lines)


def update_markdown_section(path: Path, marker: str, body: str, *, title: str) -> None:
    """Replace the text between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in ``path``,
    appending a new ``## title`` section with the markers if they are absent."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + block + tail)
    else:
        path.write_text(text.rstrip() + f"\n\n## {title}\n\n" + block + "\n")


def iter_results(path: Path) -> Iterator[dict[str, Any]]:
    """Results saved by earlier runs (bench/results/workloads.json), for the combined table."""
    if path.exists():
        yield from json.loads(path.read_text()).get("results", [])
