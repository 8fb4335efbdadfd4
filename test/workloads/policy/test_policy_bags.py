"""Demonstrations as rosbag2 bags, written and read back in both storages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.dataset import read_episode
from fogros_dist.workloads.policy.messages import stamp_ns
from fogros_dist.workloads.policy.record import Storage, record_demonstrations
from fogros_dist.workloads.policy.sim import ReachConfig, ReachEnv, ScriptedExpert, run_expert_episode

STORAGE_FILE = {"mcap": ".mcap", "sqlite3": ".db3"}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bags_are_written_per_episode_and_read_back_exactly(tmp_path: Path, storage: Storage) -> None:
    recorded = record_demonstrations(out_dir=tmp_path, episodes=3, seed=5, storage=storage, settle_steps=5)
    assert [r.path.name for r in recorded] == ["episode_00000", "episode_00001", "episode_00002"]
    types = MessageTypes("jazzy")
    config = ReachConfig()
    for episode in recorded:
        files = [p.suffix for p in episode.path.iterdir() if p.name != "metadata.yaml"]
        assert files == [STORAGE_FILE[storage]]
        metadata = (episode.path / "metadata.yaml").read_text()
        assert f"fogros_dist.policy.episode: '{episode.index}'" in metadata
        assert f"fogros_dist.policy.seed: '{episode.seed}'" in metadata
        with Reader(episode.path) as reader:
            counts = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
            assert counts == {
                "/joint_states": ("sensor_msgs/msg/JointState", episode.steps),
                "/goal": ("geometry_msgs/msg/PoseStamped", 1),
                "/cmd": ("geometry_msgs/msg/TwistStamped", episode.steps),
            }
            stamps: dict[str, list[int]] = {"/joint_states": [], "/cmd": [], "/goal": []}
            for connection, log_time, raw in reader.messages():
                msg = types.deserialize(connection.msgtype, raw)
                stamp = stamp_ns(msg.header)
                # Received after it was stamped, by a plausible transport delay.
                assert 0 < log_time - stamp < 5_000_000
                stamps[connection.topic].append(stamp)
        # Each command carries the stamp of the joint state it answers.
        assert stamps["/cmd"] == stamps["/joint_states"]
        assert stamps["/goal"][0] < stamps["/joint_states"][0]
        periods = np.diff(stamps["/joint_states"])
        assert np.all(np.abs(periods - 100_000_000) <= 6_000_000)
        assert np.unique(periods).size > 1  # jittered, not a perfect clock

        # Read back through the dataset's default mapping: the rollout, exactly.
        observations, actions, success = run_expert_episode(
            ReachEnv(config), ScriptedExpert(config), seed=episode.seed, settle_steps=5
        )
        assert success == episode.success
        back = read_episode(episode.path)
        assert np.array_equal(back.observations, observations)
        assert np.array_equal(back.actions, actions)
        assert np.all(np.diff(back.times) == 100_000_000)


def test_recording_is_deterministic(tmp_path: Path) -> None:
    first = record_demonstrations(out_dir=tmp_path / "a", episodes=2, seed=1, storage="mcap")
    second = record_demonstrations(out_dir=tmp_path / "b", episodes=2, seed=1, storage="sqlite3")
    for a, b in zip(first, second, strict=True):
        assert (a.seed, a.steps, a.success) == (b.seed, b.steps, b.success)
        with Reader(a.path) as ra, Reader(b.path) as rb:
            ma = [(c.topic, t, bytes(d)) for c, t, d in ra.messages()]
            mb = [(c.topic, t, bytes(d)) for c, t, d in rb.messages()]
        assert ma == mb


def test_existing_bag_is_not_overwritten(tmp_path: Path) -> None:
    record_demonstrations(out_dir=tmp_path, episodes=1, seed=0)
    with pytest.raises(
        ConfigError, match=r"cannot write bag .*episode_00000 .*choose an empty or new bag directory"
    ):
        record_demonstrations(out_dir=tmp_path, episodes=1, seed=0)
