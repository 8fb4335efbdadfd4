"""policy_node's logic: stamped replies, open-loop chunks, clipping, and bad input that never stops it."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from policy_test_helpers import TrainedPolicy

from fogros_dist.errors import ConfigError
from fogros_dist.nodes.runtime import guarded
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy import WORKLOAD
from fogros_dist.workloads.policy.dataset import TopicFields
from fogros_dist.workloads.policy.messages import TWIST_STAMPED, PolicyMessages
from fogros_dist.workloads.policy.model import LoadedPolicy, load_policy
from fogros_dist.workloads.policy.node import PolicyServer

T0 = 1_800_000_000_000_000_000
PERIOD = 100_000_000
LOG = logging.getLogger("policy_node_test")
LOG.propagate = True


class Robot:
    """Feeds a PolicyServer as the graph would (through guarded callbacks) and keeps its replies."""

    def __init__(self, policy: LoadedPolicy, *, execute: int = 8) -> None:
        self.types = MessageTypes("jazzy")
        self.messages = PolicyMessages(self.types)
        self.sent: list[bytes] = []
        self.server = PolicyServer(
            policy=policy,
            types=self.types,
            publish=self.sent.append,
            action_topic="/cmd",
            observation_topics=("/joint_states", "/goal"),
            execute=execute,
            log=LOG,
        )
        self.on_state = guarded(LOG, "/joint_states", self.server.callback(0))
        self.on_goal = guarded(LOG, "/goal", self.server.callback(1))

    def goal(self, x: float, y: float) -> None:
        self.on_goal(self.messages.goal(stamp=T0, x=x, y=y))

    def state(self, k: int, position: list[float], velocity: list[float] | None = None) -> None:
        self.on_state(
            self.messages.joint_state(stamp=T0 + k * PERIOD, position=position, velocity=velocity or [0, 0])
        )

    def commands(self) -> list[tuple[int, float, float]]:
        out = []
        for cdr in self.sent:
            msg = self.types.deserialize(TWIST_STAMPED, cdr)
            out.append((WORKLOAD.reply_key(cdr), float(msg.twist.linear.x), float(msg.twist.linear.y)))
        return out


@pytest.fixture(scope="module")
def policy(trained_policy: TrainedPolicy) -> LoadedPolicy:
    return load_policy(trained_policy.path)


def test_each_state_is_answered_with_its_stamp_from_open_loop_chunks(policy: LoadedPolicy) -> None:
    robot = Robot(policy)
    robot.goal(0.3, -0.2)
    for k in range(16):
        robot.state(k, [0.0 + 0.01 * k, 0.0])
    commands = robot.commands()
    assert [key for key, _, _ in commands] == [T0 + k * PERIOD for k in range(16)]
    assert robot.server.plans == 2  # one model call per 8 states
    first = policy.model.predict(np.array([0.0, 0.0, 0.0, 0.0, 0.3, -0.2]))[0]
    # The first eight commands are the first chunk, open loop, whatever states came in between.
    assert np.allclose([(vx, vy) for _, vx, vy in commands[:8]], first, atol=1e-6)


def test_replans_when_the_goal_changes_or_the_state_stream_jumps(policy: LoadedPolicy) -> None:
    robot = Robot(policy)
    robot.goal(0.3, -0.2)
    robot.state(0, [0.0, 0.0])
    robot.state(1, [0.0, 0.0])
    assert robot.server.plans == 1
    robot.goal(-0.4, 0.1)
    robot.state(2, [0.0, 0.0])
    assert robot.server.plans == 2
    robot.state(10, [0.0, 0.0])  # a pause of 8 periods: the plan is stale
    assert robot.server.plans == 3
    robot.state(4, [0.0, 0.0])  # time went backwards (a replayed bag, a restarted driver)
    assert robot.server.plans == 4
    assert len(robot.commands()) == 5


def test_execute_one_is_closed_loop(policy: LoadedPolicy) -> None:
    robot = Robot(policy, execute=1)
    robot.goal(0.3, -0.2)
    for k in range(4):
        robot.state(k, [0.0, 0.0])
    assert robot.server.plans == 4
    with pytest.raises(ConfigError, match=r"execute \(9\) must be in 1..8"):
        Robot(policy, execute=9)


def test_a_state_before_any_goal_is_answered_when_the_goal_arrives(
    policy: LoadedPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    robot = Robot(policy)
    with caplog.at_level(logging.INFO, logger=LOG.name):
        robot.state(0, [0.1, 0.1])
        assert robot.sent == []
        robot.goal(0.5, 0.5)
    assert [key for key, _, _ in robot.commands()] == [T0]
    assert "waiting for /goal before acting on /joint_states" in caplog.text


def test_bad_observations_are_warned_with_topic_and_value_and_skipped(
    policy: LoadedPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    robot = Robot(policy)
    robot.goal(0.3, -0.2)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        robot.state(0, [0.0, 0.0], [float("nan"), 0.0])
        robot.on_state(robot.messages.joint_state(stamp=T0 + PERIOD, position=[0.1], velocity=[0.0, 0.0]))
        robot.goal(float("inf"), 0.0)
        robot.on_state(b"\x00\x01\x00\x00garbage")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == (
        "dropped a message on /joint_states: non-finite observation velocity[0]=nan: publish finite numbers"
    )
    assert warnings[1] == (
        "dropped a message on /joint_states: "
        "position on /joint_states has 1 values, position[1] needs at least 2"
    )
    assert (
        warnings[2]
        == "dropped a message on /goal: non-finite observation pose.position.x=inf: publish finite numbers"
    )
    assert re.match(
        r"dropped a message on /joint_states: \d+ bytes do not decode as 'sensor_msgs/msg/JointState'",
        warnings[3],
    )
    assert robot.sent == []
    robot.state(2, [0.0, 0.0])  # still serving, with the last good goal
    assert [key for key, _, _ in robot.commands()] == [T0 + 2 * PERIOD]


def test_out_of_range_actions_are_clipped_with_a_warning(
    policy: LoadedPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    # Bounds tighter than the policy was trained for: its commands toward a distant goal exceed them.
    robot = Robot(replace(policy, action_low=np.array([-0.1, -0.1]), action_high=np.array([0.1, 0.1])))
    robot.goal(0.8, -0.8)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        robot.state(0, [-0.8, 0.8])
        robot.state(1, [-0.8, 0.8])
    commands = robot.commands()
    assert [key for key, _, _ in commands] == [T0, T0 + PERIOD]  # clipped, still answered
    assert commands[0][1:] == (0.1, -0.1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # throttled: at most one a second
    assert warnings[0].startswith("clipped action on /cmd: twist.linear.x=")
    assert warnings[0].endswith(" outside [-0.1, 0.1]")
    assert float(warnings[0].split("=")[1].split()[0]) > 0.1


def test_missing_model_exits_with_one_line_naming_the_path_and_the_fix(
    tmp_path: Path, ros_domain_id: int
) -> None:
    missing = tmp_path / "models" / "policy.pt"
    env = {**os.environ, "FOGROS_DIST_GRAPH": "dds", "ROS_DOMAIN_ID": str(ros_domain_id)}
    done = subprocess.run(
        [sys.executable, "-m", "fogros_dist.workloads.policy.node", "--ros-args", "-p", f"model:={missing}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"policy_node: error: policy model {missing} does not exist: "
        "train one with `fogros-dist train policy` or pass -p model:=PATH"
    )


def test_a_mapping_the_node_cannot_serve_is_refused_at_start(policy: LoadedPolicy) -> None:
    unstamped = TopicFields(topic="/obs", type="std_msgs/msg/Float32MultiArray", fields=("data[0]",))
    mapping = replace(policy.mapping, observation=(unstamped, *policy.mapping.observation[1:]))
    with pytest.raises(
        ConfigError, match=r"first observation topic /obs is a std_msgs/msg/Float32MultiArray, which"
    ):
        Robot(replace(policy, mapping=mapping))
    wrench = TopicFields(topic="/cmd", type="geometry_msgs/msg/WrenchStamped", fields=("wrench.force.x",))
    with pytest.raises(ConfigError, match=r"policy_node publishes geometry_msgs/msg/TwistStamped"):
        Robot(replace(policy, mapping=replace(policy.mapping, action=wrench)))
