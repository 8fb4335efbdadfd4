"""Success rates in the simulated task: the cloned policy next to the scripted expert.

The policy runs open loop: it sees an observation, predicts a chunk of actions, and the first
``execute`` of them are applied blind before it looks again (``execute`` = chunk: replan every
chunk, as RB2 and ACT execute). Rollouts of all episodes advance in lockstep so each replanning
step is one batched forward pass. Evaluation episodes use their own seed stream, so no start and
goal of the demonstrations reappears. Rates come with a Wilson score interval, which stays
inside [0, 1] and is honest at rates near 100% where the normal approximation is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.policy.record import episode_seed
from fogros_dist.workloads.policy.sim import FloatArray, ReachConfig, ReachEnv, ScriptedExpert

__all__ = ["EVAL_STREAM", "SuccessRate", "evaluate_expert", "evaluate_policy", "wilson_interval"]

# episode_seed stream of evaluation rollouts (0 is the demonstrations').
EVAL_STREAM = 1

# (B, D) observations -> (B, H, A) action chunks.
ChunkFn = Callable[[FloatArray], FloatArray]


def wilson_interval(successes: int, trials: int, *, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% for z = 1.96).

    Raises:
        ConfigError: ``trials`` < 1 or ``successes`` outside 0..trials.
    """
    if trials < 1 or not 0 <= successes <= trials:
        msg = f"{successes} successes in {trials} trials: need trials >= 1 and 0 <= successes <= trials"
        raise ConfigError(msg)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 or all successes the bound is exactly 0 or 1; rounding would leave 0.9999999999999999.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, kw_only=True)
class SuccessRate:
    """Successes out of episodes, with the 95% Wilson interval."""

    successes: int
    episodes: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        """successes / episodes."""
        return self.successes / self.episodes

    @classmethod
    def of(cls, outcomes: list[bool]) -> SuccessRate:
        """Summarise per-episode outcomes."""
        wins = sum(outcomes)
        low, high = wilson_interval(wins, len(outcomes))
        return cls(successes=wins, episodes=len(outcomes), low=low, high=high)

    def describe(self) -> str:
        """``"94.0% (47/50, 95% CI 83.8-97.9%)"``."""
        return (
            f"{100 * self.rate:.1f}% ({self.successes}/{self.episodes}, "
            f"95% CI {100 * self.low:.1f}-{100 * self.high:.1f}%)"
        )


def _check_episodes(episodes: int) -> None:
    if episodes < 1:
        msg = f"evaluation episodes ({episodes}) must be >= 1: use at least 50 for a useful interval"
        raise ConfigError(msg)


def evaluate_policy(
    policy: ChunkFn,
    *,
    episodes: int,
    seed: int,
    sim: ReachConfig | None = None,
    execute: int | None = None,
) -> SuccessRate:
    """Roll ``policy`` out open loop in ``episodes`` fresh episodes.

    Args:
        policy: raw observations ``(B, D)`` -> action chunks ``(B, H, A)``.
        episodes: rollouts (50 or more for an interval narrower than ±15%).
        seed: seeds the evaluation episodes (:func:`~fogros_dist.workloads.policy.record.episode_seed`
            stream 1).
        sim: the task; default :class:`ReachConfig` if None.
        execute: actions applied per chunk before replanning; the whole chunk if None.

    Returns:
        The success rate.

    Raises:
        ConfigError: ``episodes`` < 1 or ``execute`` < 1.
    """
    _check_episodes(episodes)
    if execute is not None and execute < 1:
        msg = f"execute ({execute}) must be >= 1: actions applied per chunk before replanning"
        raise ConfigError(msg)
    config = sim or ReachConfig()
    envs = [ReachEnv(config) for _ in range(episodes)]
    observations = np.stack(
        [env.reset(seed=episode_seed(seed, i, stream=EVAL_STREAM)) for i, env in enumerate(envs)]
    )
    success = np.zeros(episodes, dtype=bool)
    active = np.ones(episodes, dtype=bool)
    low, high = config.action_low, config.action_high
    while active.any():
        live = np.flatnonzero(active)
        chunks = policy(observations[live])
        steps = chunks.shape[1] if execute is None else min(execute, chunks.shape[1])
        for k in range(steps):
            for j, i in enumerate(live):
                if not active[i]:
                    continue
                result = envs[i].step(np.clip(chunks[j, k], low, high))
                observations[i] = result.observation
                if result.done:
                    success[i] = result.success
                    active[i] = False
    return SuccessRate.of(success.tolist())


def evaluate_expert(
    *, episodes: int, seed: int, sim: ReachConfig | None = None, noise: float = 0.05
) -> SuccessRate:
    """The scripted expert's success rate on the same evaluation episodes as :func:`evaluate_policy`.

    Raises:
        ConfigError: ``episodes`` < 1.
    """
    _check_episodes(episodes)
    config = sim or ReachConfig()
    expert = ScriptedExpert(config, noise=noise)
    outcomes: list[bool] = []
    for i in range(episodes):
        env = ReachEnv(config)
        ep_seed = episode_seed(seed, i, stream=EVAL_STREAM)
        observation = env.reset(seed=ep_seed)
        rng = np.random.default_rng([ep_seed, 1])
        while True:
            result = env.step(expert.act(observation, rng))
            observation = result.observation
            if result.done:
                outcomes.append(result.success)
                break
    return SuccessRate.of(outcomes)
