"""A planar reach task for imitation learning: an XY stage that must stop on a random goal.

The stage is a 2-D point mass behind a velocity loop: the action is a velocity command per axis
(what a ``geometry_msgs/msg/TwistStamped`` on ``/cmd`` carries), the measured velocity follows it
with a first-order lag, and a small random disturbance pushes the carriage every step. An episode
succeeds when the carriage is within ``goal_tolerance`` of the goal *and* nearly at rest, so a
policy has to brake, not just pass through. :class:`ScriptedExpert` is the demonstrator: a
saturated PD law on position with Gaussian noise on its commands.

Everything random comes from generators seeded at :meth:`ReachEnv.reset`, so an episode is a pure
function of its seed and the actions taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "OBSERVATION_FIELDS",
    "FloatArray",
    "ReachConfig",
    "ReachEnv",
    "ScriptedExpert",
    "StepResult",
    "run_expert_episode",
]

FloatArray = npt.NDArray[np.float64]

# The layout of ReachEnv observations; dataset.DEFAULT_MAPPING reads bags into the same order.
OBSERVATION_FIELDS = ("x", "y", "vx", "vy", "goal_x", "goal_y")


@dataclass(frozen=True, kw_only=True)
class ReachConfig:
    """The task's physical constants.

    Attributes:
        dt: control period, s (10 Hz, the rate demonstrations are recorded and replayed at).
        tau: time constant of the stage's velocity loop, s.
        max_speed: bound of each velocity command, m/s; actions outside are saturated.
        arena: start positions lie in [-arena, arena]^2; the stage's travel ends there too.
        goal_margin: goals lie at least this far inside the arena, m.
        min_goal_distance: a goal is at least this far from the start, m.
        goal_tolerance: success radius around the goal, m.
        speed_tolerance: success needs the speed below this, m/s.
        horizon: steps before an episode counts as failed.
        disturbance: standard deviation of the velocity kick per step, m/s.
    """

    dt: float = 0.1
    tau: float = 0.25
    max_speed: float = 0.5
    arena: float = 1.0
    goal_margin: float = 0.1
    min_goal_distance: float = 0.3
    goal_tolerance: float = 0.05
    speed_tolerance: float = 0.05
    horizon: int = 120
    disturbance: float = 0.005

    def __post_init__(self) -> None:
        if self.dt <= 0 or self.tau <= 0:
            msg = f"dt ({self.dt}) and tau ({self.tau}) must be positive: use seconds, e.g. dt=0.1"
            raise ValueError(msg)
        if self.max_speed <= 0 or self.horizon < 1:
            msg = f"max_speed ({self.max_speed}) must be > 0 and horizon ({self.horizon}) >= 1"
            raise ValueError(msg)

    @property
    def action_low(self) -> FloatArray:
        """Lower bound of each action component (vx, vy), m/s."""
        return np.full(2, -self.max_speed)

    @property
    def action_high(self) -> FloatArray:
        """Upper bound of each action component (vx, vy), m/s."""
        return np.full(2, self.max_speed)


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What :meth:`ReachEnv.step` returns."""

    observation: FloatArray
    success: bool
    done: bool


class ReachEnv:
    """The XY stage. Call :meth:`reset` before :meth:`step`.

    Args:
        config: the task's constants.
    """

    def __init__(self, config: ReachConfig | None = None) -> None:
        self.config = config or ReachConfig()
        self._rng = np.random.default_rng(0)
        self._position = np.zeros(2)
        self._velocity = np.zeros(2)
        self._goal = np.zeros(2)
        self._steps = 0
        self._started = False
        # Exact discretisation of the first-order velocity loop over one control period.
        self._alpha = 1.0 - math.exp(-self.config.dt / self.config.tau)

    def reset(self, *, seed: int) -> FloatArray:
        """Start an episode: random start at rest, random goal; return the first observation."""
        cfg = self.config
        self._rng = np.random.default_rng(seed)
        self._position = self._rng.uniform(-cfg.arena, cfg.arena, 2)
        self._velocity = np.zeros(2)
        inner = cfg.arena - cfg.goal_margin
        while True:
            goal = self._rng.uniform(-inner, inner, 2)
            if np.linalg.norm(goal - self._position) >= cfg.min_goal_distance:
                break
        self._goal = goal
        self._steps = 0
        self._started = True
        return self.observation()

    def observation(self) -> FloatArray:
        """``[x, y, vx, vy, goal_x, goal_y]`` (see OBSERVATION_FIELDS)."""
        return np.concatenate([self._position, self._velocity, self._goal])

    @property
    def goal(self) -> FloatArray:
        """The current goal, m."""
        return self._goal.copy()

    @property
    def steps(self) -> int:
        """Steps taken in this episode."""
        return self._steps

    def success(self) -> bool:
        """Whether the stage rests on the goal now."""
        cfg = self.config
        near = float(np.linalg.norm(self._position - self._goal)) < cfg.goal_tolerance
        return near and float(np.linalg.norm(self._velocity)) < cfg.speed_tolerance

    def step(self, action: npt.ArrayLike) -> StepResult:
        """Apply one velocity command for one period.

        Args:
            action: ``(vx, vy)`` in m/s; components beyond ``±max_speed`` are saturated, as the
                stage's drive would.

        Returns:
            The new observation, whether the stage now rests on the goal, and whether the episode
            is over (success or horizon reached).

        Raises:
            ValueError: the action is not two finite numbers, or reset() was never called.
        """
        if not self._started:
            msg = "step() before reset(): call reset(seed=...) first"
            raise ValueError(msg)
        command = np.asarray(action, dtype=np.float64).reshape(-1)
        if command.shape != (2,) or not np.all(np.isfinite(command)):
            msg = f"action {command.tolist()} is invalid: pass two finite velocities (vx, vy) in m/s"
            raise ValueError(msg)
        cfg = self.config
        command = np.clip(command, -cfg.max_speed, cfg.max_speed)
        previous = self._velocity
        self._velocity = previous + self._alpha * (command - previous)
        self._velocity = self._velocity + self._rng.normal(0.0, cfg.disturbance, 2)
        # Trapezoidal position update: the velocity moves continuously within the period.
        self._position = self._position + 0.5 * (previous + self._velocity) * cfg.dt
        # End stops: the carriage cannot leave the travel range and stops dead against it.
        hit = np.abs(self._position) > cfg.arena
        self._position = np.clip(self._position, -cfg.arena, cfg.arena)
        self._velocity = np.where(hit, 0.0, self._velocity)
        self._steps += 1
        success = self.success()
        return StepResult(
            observation=self.observation(), success=success, done=success or self._steps >= cfg.horizon
        )


class ScriptedExpert:
    """The demonstrator: a saturated PD law toward the goal with Gaussian command noise.

    Args:
        config: the task the expert acts in (for its speed bound).
        gain: proportional gain, 1/s.
        damping: velocity feedback, dimensionless (lead against the stage's lag).
        noise: standard deviation of the noise added to each command, m/s; noisy demonstrations
            visit states near the expert's path, so a cloned policy learns to recover from them.
    """

    def __init__(
        self, config: ReachConfig, *, gain: float = 1.6, damping: float = 0.3, noise: float = 0.05
    ) -> None:
        self.config = config
        self.gain = gain
        self.damping = damping
        self.noise = noise

    def act(self, observation: FloatArray, rng: np.random.Generator) -> FloatArray:
        """The expert's command for ``observation``, noise included, within the action bounds."""
        position, velocity, goal = observation[0:2], observation[2:4], observation[4:6]
        command = self.gain * (goal - position) - self.damping * velocity
        command = command + rng.normal(0.0, self.noise, 2)
        limit = self.config.max_speed
        clipped: FloatArray = np.clip(command, -limit, limit)
        return clipped


def run_expert_episode(
    env: ReachEnv, expert: ScriptedExpert, *, seed: int, settle_steps: int = 0
) -> tuple[FloatArray, FloatArray, bool]:
    """Roll the expert out from ``reset(seed=seed)``.

    Args:
        env: the task.
        expert: the demonstrator.
        seed: the episode's seed (the expert's noise is drawn from a generator derived from it).
        settle_steps: steps to keep acting after success, so recorded demonstrations show holding
            still at the goal, not only arriving there.

    Returns:
        ``(observations, actions, success)``: observation ``k`` is what action ``k`` answered;
        both arrays have one row per step.
    """
    rng = np.random.default_rng([seed, 1])
    observation = env.reset(seed=seed)
    observations: list[FloatArray] = []
    actions: list[FloatArray] = []
    success = False
    after = 0
    while True:
        action = expert.act(observation, rng)
        observations.append(observation)
        actions.append(action)
        result = env.step(action)
        observation = result.observation
        success = success or result.success
        if success:
            after += 1
            if after > settle_steps:
                break
        elif result.done:
            break
        if env.steps >= env.config.horizon + settle_steps:
            break
    return np.asarray(observations), np.asarray(actions), success
