"""Bags -> samples: resampling and normalisation on known signals, chunks, splits, mapping errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.dataset import (
    DEFAULT_MAPPING,
    ChunkDataset,
    Episode,
    Normalizer,
    TopicFields,
    read_episode,
    read_episodes,
    resample,
    split_episodes,
)
from fogros_dist.workloads.policy.messages import (
    CMD_TOPIC,
    GOAL,
    GOAL_TOPIC,
    JOINT_STATE,
    STATE_TOPIC,
    TWIST_STAMPED,
    PolicyMessages,
)

T0 = 1_700_000_000_000_000_000
RAMP_SLOPE = 2.0  # units per second


def _ramp(stamp: int) -> float:
    return RAMP_SLOPE * (stamp - T0) / 1e9 + 1.0


def _known_signal_bag(path: Path, *, rate_hz: float, samples: int, topics: tuple[str, ...] = ()) -> list[int]:
    """A bag whose joint state carries a ramp (position[0]) and its sample index (velocity[0]),
    with jittered stamps; the command echoes the index. Returns the joint-state stamps."""
    topics = topics or (STATE_TOPIC, GOAL_TOPIC, CMD_TOPIC)
    messages = PolicyMessages(MessageTypes("jazzy"))
    store = messages.types.typestore
    rng = np.random.default_rng(0)
    period = round(1e9 / rate_hz)
    stamps = [T0 + k * period + int(rng.integers(-3_000_000, 3_000_001)) for k in range(samples)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {
            name: writer.add_connection(name, kind, typestore=store)
            for name, kind in ((STATE_TOPIC, JOINT_STATE), (GOAL_TOPIC, GOAL), (CMD_TOPIC, TWIST_STAMPED))
            if name in topics
        }
        if GOAL_TOPIC in conns:
            writer.write(conns[GOAL_TOPIC], T0 - 10**8, messages.goal(stamp=T0 - 10**8, x=0.25, y=-0.5))
        for k, stamp in enumerate(stamps):
            if STATE_TOPIC in conns:
                state = messages.joint_state(stamp=stamp, position=[_ramp(stamp), 0.0], velocity=[k, 0.0])
                writer.write(conns[STATE_TOPIC], stamp + 500_000, state)
            if CMD_TOPIC in conns:
                cmd = messages.command(header=messages.header(stamp=stamp, frame_id=""), vx=float(k), vy=0.0)
                writer.write(conns[CMD_TOPIC], stamp + 900_000, cmd)
    return stamps


def test_resample_zoh_and_linear_on_a_known_signal() -> None:
    rng = np.random.default_rng(1)
    times = (np.arange(20) * 100_000_000 + rng.integers(-3_000_000, 3_000_001, 20)).astype(np.int64)
    values = np.stack([3.0 * times / 1e9 + 1.0, np.arange(20.0)], axis=1)
    grid = (times[0] + np.arange(19) * 100_000_000).astype(np.int64)
    linear = resample(times, values, grid, method="linear")
    assert np.allclose(linear[:, 0], 3.0 * grid / 1e9 + 1.0, rtol=0, atol=1e-9)
    held = resample(times, values, grid, method="zoh", tolerance_ns=50_000_000)
    assert np.array_equal(held[:, 1], np.arange(19.0))  # every sample on its own grid step
    # Without a tolerance, samples stamped late by their jitter land on the next step instead.
    strict = resample(times, values, grid, method="zoh")
    late = (times[:19] - times[0]) > np.arange(19) * 100_000_000
    assert np.array_equal(strict[:, 1], np.arange(19.0) - late)
    with pytest.raises(ValueError, match=r"grid time .* is before the first sample"):
        resample(times, values, grid - 10**9, method="zoh")


def test_bag_downsampled_from_20_to_10_hz(tmp_path: Path) -> None:
    stamps = _known_signal_bag(tmp_path / "bag", rate_hz=20.0, samples=41)
    episode = read_episode(tmp_path / "bag")
    assert len(episode) == 21
    assert np.array_equal(episode.times, stamps[0] + np.arange(21) * 100_000_000)
    # Zero-order hold: every other sample, exactly; the goal is held from before the start.
    assert np.array_equal(episode.observations[:, 2], np.arange(0.0, 41.0, 2.0))
    assert np.array_equal(episode.observations[:, 0], [_ramp(s) for s in stamps[::2]])
    assert np.all(episode.observations[:, 4:6] == [0.25, -0.5])
    assert np.array_equal(episode.actions[:, 0], np.arange(0.0, 41.0, 2.0))  # paired with its state

    # Linear interpolation of the ramp: its exact value at every grid time, despite the jitter.
    state = replace(DEFAULT_MAPPING.observation[0], resample="linear")
    linear = replace(DEFAULT_MAPPING, observation=(state, DEFAULT_MAPPING.observation[1]))
    interpolated = read_episode(tmp_path / "bag", mapping=linear)
    inside = interpolated.times <= stamps[-1]  # past the last sample the value is held, not extrapolated
    assert inside.sum() >= 20
    expected = [_ramp(int(t)) for t in interpolated.times[inside]]
    assert np.allclose(interpolated.observations[inside, 0], expected, rtol=0, atol=1e-9)


def test_normalisation_statistics_on_known_data() -> None:
    def episode(obs: list[list[float]], act: list[list[float]]) -> Episode:
        return Episode(
            bag=Path("x"),
            times=np.arange(len(obs), dtype=np.int64),
            observations=np.asarray(obs),
            actions=np.asarray(act),
        )

    eps = [
        episode([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]], [[0.0], [2.0], [4.0]]),
        episode([[5.0, 7.0], [9.0, 7.0]], [[6.0], [8.0]]),
    ]
    norm = Normalizer.fit(eps)
    assert norm.observation_mean == pytest.approx((4.0, 7.0))
    assert norm.observation_std[0] == pytest.approx(np.std([1, 2, 3, 5, 9]))
    assert norm.observation_std[1] == 1e-3  # a constant dimension gets the floor, not 0
    assert norm.action_mean == pytest.approx((4.0,))
    assert norm.action_std == pytest.approx((np.sqrt(8.0),))
    data = ChunkDataset(eps, chunk=2, normalizer=norm)
    assert data.observations[:, 0].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert data.observations[:, 0].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    raw = norm.denormalize_actions(norm.normalize_actions(np.array([[3.0]])))
    assert raw == pytest.approx(np.array([[3.0]]))


def test_chunks_are_the_next_actions_masked_past_the_episode_end() -> None:
    actions = np.arange(5.0)[:, None]
    ep = Episode(
        bag=Path("x"), times=np.arange(5, dtype=np.int64), observations=actions.copy(), actions=actions
    )
    norm = Normalizer(observation_mean=(0.0,), observation_std=(1.0,), action_mean=(0.0,), action_std=(1.0,))
    data = ChunkDataset([ep], chunk=3, normalizer=norm)
    assert len(data) == 5
    obs, chunk, mask = data[3]
    assert obs.tolist() == [3.0]
    assert chunk[:, 0].tolist() == [3.0, 4.0, 4.0]  # padded with the last action ...
    assert mask.tolist() == [True, True, False]  # ... which the loss ignores
    assert data.mask.sum().item() == 3 + 3 + 3 + 2 + 1
    with pytest.raises(ConfigError, match=r"chunk \(0\) must be >= 1"):
        ChunkDataset([ep], chunk=0, normalizer=norm)


def test_split_is_by_whole_episode_and_deterministic() -> None:
    eps = [
        Episode(
            bag=Path(f"e{i}"),
            times=np.zeros(1, np.int64),
            observations=np.zeros((1, 1)),
            actions=np.zeros((1, 1)),
        )
        for i in range(10)
    ]
    train, val = split_episodes(eps, val_fraction=0.2, seed=3)
    assert len(train) == 8
    assert len(val) == 2
    assert {e.bag for e in train}.isdisjoint({e.bag for e in val})
    again = split_episodes(eps, val_fraction=0.2, seed=3)
    assert [e.bag for e in again[1]] == [e.bag for e in val]
    with pytest.raises(ConfigError, match=r"1 episode\(s\) cannot be split"):
        split_episodes(eps[:1], val_fraction=0.2, seed=0)


def test_missing_mapped_topic_names_the_bag_and_the_topic(tmp_path: Path) -> None:
    bag = tmp_path / "no_goal"
    _known_signal_bag(bag, rate_hz=10.0, samples=5, topics=(STATE_TOPIC, CMD_TOPIC))
    with pytest.raises(ConfigError) as err:
        read_episode(bag)
    assert str(err.value) == (
        f"bag {bag} has no topic /goal (mapped to the observation): it records /cmd, /joint_states; "
        "record /goal or change the mapping"
    )
    _known_signal_bag(tmp_path / "no_cmd", rate_hz=10.0, samples=5, topics=(STATE_TOPIC, GOAL_TOPIC))
    with pytest.raises(ConfigError, match=r"no topic /cmd \(mapped to the action\)"):
        read_episode(tmp_path / "no_cmd")


def test_mapping_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _known_signal_bag(bag, rate_hz=10.0, samples=5)
    wrong_type = replace(DEFAULT_MAPPING.observation[1], type="geometry_msgs/msg/PointStamped")
    mapping = replace(DEFAULT_MAPPING, observation=(DEFAULT_MAPPING.observation[0], wrong_type))
    with pytest.raises(
        ConfigError, match=r"records /goal as geometry_msgs/msg/PoseStamped, the mapping expects"
    ):
        read_episode(bag, mapping=mapping)
    too_far = replace(DEFAULT_MAPPING.observation[0], fields=("position[5]",))
    mapping = replace(DEFAULT_MAPPING, observation=(too_far,))
    with pytest.raises(
        ConfigError, match=r"position on /joint_states has 2 values, position\[5\] needs at least 6"
    ):
        read_episode(bag, mapping=mapping)
    with pytest.raises(ConfigError, match=r"field path 'pose..x' is malformed"):
        TopicFields(topic="/goal", type=GOAL, fields=("pose..x",))
    with pytest.raises(ConfigError, match=r"no rosbag2 bags .* in .*empty"):
        read_episodes(tmp_path / "empty")
