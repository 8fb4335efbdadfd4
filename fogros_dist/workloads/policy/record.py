"""Record the scripted expert's demonstrations as rosbag2 bags, one bag per episode.

Each bag looks like what ``ros2 bag record /joint_states /goal /cmd`` would capture on a robot
driven by a 10 Hz controller: the goal once at the start, a joint state every period stamped by the
driver with a little clock jitter, and the controller's command a few milliseconds later carrying
the stamp of the joint state it answers. Receive (log) times trail the header stamps by a random
transport delay. Episode index, seed and outcome go into the bag's ``custom_data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.messages import (
    CMD_TOPIC,
    GOAL,
    GOAL_TOPIC,
    JOINT_STATE,
    STATE_TOPIC,
    TWIST_STAMPED,
    PolicyMessages,
)
from fogros_dist.workloads.policy.sim import (
    FloatArray,
    ReachConfig,
    ReachEnv,
    ScriptedExpert,
    run_expert_episode,
)

__all__ = [
    "CUSTOM_DATA_PREFIX",
    "STORAGES",
    "RecordedEpisode",
    "Storage",
    "episode_seed",
    "record_demonstrations",
    "write_episode_bag",
]

Storage = Literal["mcap", "sqlite3"]
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
CUSTOM_DATA_PREFIX = "fogros_dist.policy."

_NS = 1_000_000_000
# A fixed wall-clock origin (2023-11-14T22:13:20Z) keeps recordings byte-for-byte reproducible.
_EPOCH_NS = 1_700_000_000 * _NS
# Driver stamping jitter (sd, clipped), transport delay and controller compute time, in ns.
_STAMP_JITTER_SD_NS = 1_000_000
_STAMP_JITTER_MAX_NS = 3_000_000
_TRANSPORT_NS = (200_000, 1_500_000)
_COMPUTE_NS = (800_000, 3_000_000)
# The goal is sent this long before the first joint state, as an operator's click would be.
_GOAL_LEAD_NS = 200_000_000


@dataclass(frozen=True, kw_only=True)
class RecordedEpisode:
    """One demonstration bag."""

    path: Path
    index: int
    seed: int
    steps: int
    success: bool


def episode_seed(seed: int, index: int, *, stream: int = 0) -> int:
    """The simulator seed of episode ``index`` (``stream`` 0: demonstrations, 1: evaluation).

    Seeds come from one SeedSequence per (seed, stream, index), so evaluation episodes never
    repeat a demonstration's start and goal.
    """
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def write_episode_bag(
    path: Path,
    *,
    observations: FloatArray,
    actions: FloatArray,
    start_ns: int,
    dt: float,
    storage: Storage,
    rng: np.random.Generator,
    messages: PolicyMessages,
    custom_data: dict[str, str] | None = None,
) -> None:
    """Write one episode as a rosbag2 bag at ``path`` (a directory that must not exist).

    Args:
        path: the bag directory to create.
        observations: ``(T, 6)`` rows of ``[x, y, vx, vy, goal_x, goal_y]``.
        actions: ``(T, 2)`` velocity commands; row ``k`` answers observation ``k``.
        start_ns: nominal stamp of the first joint state.
        dt: control period, s.
        storage: ``mcap`` or ``sqlite3``.
        rng: draws the timing jitter.
        messages: message builders of the bag's ROS 2 distribution.
        custom_data: key/value strings for the bag's metadata.

    Raises:
        ConfigError: the bag exists already, or ``storage`` is unknown.
    """
    if storage not in STORAGES:
        msg = f"bag storage {storage!r} is not supported: use one of {', '.join(STORAGES)}"
        raise ConfigError(msg)
    if observations.shape[0] != actions.shape[0] or observations.shape[0] == 0:
        msg = (
            f"{observations.shape[0]} observations and {actions.shape[0]} actions: need as many, at least one"
        )
        raise ConfigError(msg)
    typestore = messages.types.typestore
    period_ns = round(dt * _NS)
    try:
        with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
            for key, value in sorted((custom_data or {}).items()):
                writer.set_custom_data(key, value)
            state_conn = writer.add_connection(STATE_TOPIC, JOINT_STATE, typestore=typestore)
            goal_conn = writer.add_connection(GOAL_TOPIC, GOAL, typestore=typestore)
            cmd_conn = writer.add_connection(CMD_TOPIC, TWIST_STAMPED, typestore=typestore)
            goal_stamp = start_ns - _GOAL_LEAD_NS
            goal = observations[0, 4:6]
            goal_cdr = messages.goal(stamp=goal_stamp, x=float(goal[0]), y=float(goal[1]))
            writer.write(goal_conn, goal_stamp + int(rng.integers(*_TRANSPORT_NS)), goal_cdr)
            for k, (obs, action) in enumerate(zip(observations, actions, strict=True)):
                jitter = int(
                    np.clip(rng.normal(0.0, _STAMP_JITTER_SD_NS), -_STAMP_JITTER_MAX_NS, _STAMP_JITTER_MAX_NS)
                )
                stamp = start_ns + k * period_ns + jitter
                received = stamp + int(rng.integers(*_TRANSPORT_NS))
                writer.write(
                    state_conn,
                    received,
                    messages.joint_state(stamp=stamp, position=obs[0:2], velocity=obs[2:4]),
                )
                header = messages.header(stamp=stamp, frame_id="")
                cmd = messages.command(header=header, vx=float(action[0]), vy=float(action[1]))
                writer.write(cmd_conn, received + int(rng.integers(*_COMPUTE_NS)), cmd)
    except WriterError as err:
        msg = f"cannot write bag {path} ({err}): choose an empty or new bag directory"
        raise ConfigError(msg) from err


def record_demonstrations(
    *,
    out_dir: Path,
    episodes: int,
    seed: int,
    storage: Storage = "mcap",
    sim: ReachConfig | None = None,
    expert_noise: float = 0.05,
    settle_steps: int = 5,
    distro: str = "jazzy",
    progress: Callable[[int, int], None] | None = None,
) -> list[RecordedEpisode]:
    """Roll out the scripted expert ``episodes`` times and write one bag per episode.

    Args:
        out_dir: bags go to ``out_dir/episode_00000`` and so on (created if missing).
        episodes: how many demonstrations.
        seed: the recording's seed; episode seeds derive from it (:func:`episode_seed`).
        storage: ``mcap`` or ``sqlite3``.
        sim: the task; the default :class:`ReachConfig` if None.
        expert_noise: the expert's command noise, m/s.
        settle_steps: steps recorded after success, holding at the goal.
        distro: ROS 2 distribution whose message definitions the bags carry.
        progress: called with ``(done, total)`` after each bag.

    Returns:
        One :class:`RecordedEpisode` per bag, in episode order.

    Raises:
        ConfigError: ``episodes`` < 1, ``storage`` unknown, or a bag exists already.
    """
    if episodes < 1:
        msg = f"episodes ({episodes}) must be >= 1"
        raise ConfigError(msg)
    config = sim or ReachConfig()
    env = ReachEnv(config)
    expert = ScriptedExpert(config, noise=expert_noise)
    messages = PolicyMessages(MessageTypes(distro))
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded: list[RecordedEpisode] = []
    for index in range(episodes):
        ep_seed = episode_seed(seed, index)
        observations, actions, success = run_expert_episode(
            env, expert, seed=ep_seed, settle_steps=settle_steps
        )
        path = out_dir / f"episode_{index:05d}"
        write_episode_bag(
            path,
            observations=observations,
            actions=actions,
            # A minute apart: episodes never overlap in time, as on a real robot.
            start_ns=_EPOCH_NS + index * 60 * _NS,
            dt=config.dt,
            storage=storage,
            rng=np.random.default_rng([ep_seed, 2]),
            messages=messages,
            custom_data={
                f"{CUSTOM_DATA_PREFIX}episode": str(index),
                f"{CUSTOM_DATA_PREFIX}seed": str(ep_seed),
                f"{CUSTOM_DATA_PREFIX}success": str(success).lower(),
            },
        )
        recorded.append(
            RecordedEpisode(path=path, index=index, seed=ep_seed, steps=len(actions), success=success)
        )
        if progress is not None:
            progress(index + 1, episodes)
    return recorded
