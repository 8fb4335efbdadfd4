"""policy_node offloaded for real: a Deployment on the Local provider, bridged over Zenoh.

The robot's DDS graph publishes goals and joint states; the bridge carries them to policy_node on
the Local machine (its own DDS domain); the stamped commands come back over the bridge.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
from policy_test_helpers import TrainedPolicy

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.state import StateStore
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec
from fogros_dist.workloads.policy import WORKLOAD
from fogros_dist.workloads.policy.messages import TWIST_STAMPED, PolicyMessages

FIRST_REPLY_TIMEOUT_S = 60.0  # the node imports torch and loads the model first
REPLY_TIMEOUT_S = 5.0


class Replies:
    """Commands arriving on the robot's graph, by key (the stamp of the state they answer)."""

    def __init__(self) -> None:
        self.types = MessageTypes("jazzy")
        self.by_key: dict[int, tuple[float, float]] = {}
        self.arrived = threading.Condition()

    def on_cmd(self, cdr: bytes) -> None:
        msg = self.types.deserialize(TWIST_STAMPED, cdr)
        with self.arrived:
            self.by_key[WORKLOAD.reply_key(cdr)] = (float(msg.twist.linear.x), float(msg.twist.linear.y))
            self.arrived.notify_all()

    def wait(self, key: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: key in self.by_key, timeout)


def test_policy_node_answers_through_the_bridge(
    tmp_path: Path, robot_domain: int, trained_policy: TrainedPolicy
) -> None:
    spec = DeploymentSpec(
        name="policy-bridge",
        machines=(MachineSpec(name="gpu"),),
        nodes=(
            NodeSpec(
                name="policy_node",
                package="fogros_dist",
                executable=WORKLOAD.executable,
                machine="gpu",
                arguments=WORKLOAD.node_arguments(trained_policy.path.parent),
                topics_in=WORKLOAD.topics_in,
                topics_out=WORKLOAD.topics_out,
            ),
        ),
    )
    lines: list[str] = []
    deployment = Deployment(
        spec,
        store=StateStore(tmp_path / "home"),
        output=lambda machine, name, stream, text: lines.append(f"[{machine}/{name}/{stream}] {text}"),
        robot_domain_id=robot_domain,
    )
    requests = list(WORKLOAD.bench_requests(count=30, seed=0))
    replies = Replies()
    graph = None
    deployment.up()
    try:
        graph = DdsGraph(robot_domain)
        publishers = {t.name: graph.publisher(t) for t in WORKLOAD.topics_in}
        graph.subscribe(WORKLOAD.reply_topic, replies.on_cmd)

        def send(index: int) -> int:
            for topic, cdr in requests[index].messages:
                publishers[topic.name].publish(cdr)
            return requests[index].key

        # Discovery on both graphs and the node's start-up take a while: repeat the first request.
        deadline = time.monotonic() + FIRST_REPLY_TIMEOUT_S
        while not replies.wait(send(0), 0.5):
            assert time.monotonic() < deadline, "no command on /cmd:\n" + "\n".join(lines[-20:])
        for index in range(1, len(requests)):
            assert replies.wait(send(index), REPLY_TIMEOUT_S), f"request {index} unanswered"
        assert {r.key for r in requests} <= set(replies.by_key)
        assert all(abs(vx) <= 0.5 and abs(vy) <= 0.5 for vx, vy in replies.by_key.values())

        # A NaN state is warned about on the machine and skipped; the node keeps serving.
        messages = PolicyMessages(MessageTypes("jazzy"))
        bad_stamp = requests[-1].key + 100_000_000
        publishers["/joint_states"].publish(
            messages.joint_state(stamp=bad_stamp, position=[0.0, math.nan], velocity=[0.0, 0.0])
        )
        good_stamp = bad_stamp + 100_000_000
        publishers["/joint_states"].publish(
            messages.joint_state(stamp=good_stamp, position=[0.1, 0.1], velocity=[0.0, 0.0])
        )
        assert replies.wait(good_stamp, REPLY_TIMEOUT_S)
        assert bad_stamp not in replies.by_key
        warning = "dropped a message on /joint_states: non-finite observation position[1]=nan"
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not any(warning in line for line in lines):
            assert time.monotonic() < deadline, "no warning in the node's log:\n" + "\n".join(lines[-20:])
            time.sleep(0.05)
        assert any(line.startswith("[gpu/policy_node/stderr]") and warning in line for line in lines)
        assert np.isfinite(list(replies.by_key.values())).all()
    finally:
        if graph is not None:
            graph.close()
        report = deployment.down()
    assert {e.name for e in report.exits} == {"policy_node", "bridge", "robot-bridge"}
    assert StateStore(tmp_path / "home").names() == []
