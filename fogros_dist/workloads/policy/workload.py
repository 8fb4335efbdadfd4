"""The policy workload's outside: `fogros-dist train policy`, the serving node, bench requests.

Training reads rosbag2 bags through a topic mapping (:mod:`.mapping`): a robot's own bags
(``--bag-dir``, only ever read) or the scripted expert's demonstrations, recorded into a
temporary folder (or ``--record-demo DIR``). It trains the chunking BC policy and reports its
action error on held-out bags next to the mean-action baseline; for the project's own topics
also its success rate next to the expert's on fresh simulated episodes.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fogros_dist.errors import ConfigError
from fogros_dist.spec import TopicSpec
from fogros_dist.workloads.base import BenchRequest, default_model_dir
from fogros_dist.workloads.policy.messages import TWIST_STAMPED, stamp_ns, topic_specs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fogros_dist.train.comm_hooks import CommHook
    from fogros_dist.train.comm_meter import CommMeter
    from fogros_dist.train.context import DistContext
    from fogros_dist.workloads.policy.dataset import ChunkDataset
    from fogros_dist.workloads.policy.mapping import MappingChoice
    from fogros_dist.workloads.policy.model import ChunkPolicy
    from fogros_dist.workloads.policy.sim import ReachConfig
    from fogros_dist.workloads.policy.train import TrainConfig, TrainResult

__all__ = ["BENCH_STREAM", "PolicyWorkload"]

# episode_seed stream of benchmark trajectories (0: demonstrations, 1: evaluation).
BENCH_STREAM = 2
_NS = 1_000_000_000
# Bench stamps start here (2027-01-15T08:00:00Z), one control period apart: unique keys.
_BENCH_EPOCH_NS = 1_800_000_000 * _NS


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"{value} is not a positive integer"
        raise argparse.ArgumentTypeError(msg)
    return value


class PolicyWorkload:
    """Imitation policy for the simulated XY-stage reach task (see :mod:`.sim`)."""

    name = "policy"
    description = (
        "Behaviour-cloning policy with open-loop action chunks, from rosbag2 demonstrations: your "
        "robot's own (--bag-dir DIR and the topic mapping) or the project's scripted expert. Scores "
        "held-out bags against the mean-action baseline, and the project's own task in simulation."
    )
    executable = "policy_node"

    def __init__(self) -> None:
        self.topics_in: tuple[TopicSpec, ...]
        self.topics_out: tuple[TopicSpec, ...]
        self.topics_in, self.topics_out = topic_specs()
        self.reply_topic: TopicSpec = self.topics_out[0]
        self._types: Any = None

    def add_train_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `fogros-dist train policy`."""
        from fogros_dist.workloads.policy.mapping import add_mapping_arguments

        data = parser.add_argument_group(
            "demonstrations (default: the project's scripted expert, recorded into a temporary folder)"
        )
        data.add_argument(
            "--bag-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help="train on your own rosbag2 bags, one folder each under DIR (only read, never written)",
        )
        data.add_argument(
            "--record-demo",
            type=Path,
            default=None,
            metavar="DIR",
            help="record the project's expert demonstrations into DIR (new or empty), keep and train on them",
        )
        # Before --bag-dir was read-only it recorded unless this was given; old scripts keep working.
        data.add_argument("--reuse-bags", action="store_true", help=argparse.SUPPRESS)
        data.add_argument(
            "--episodes", type=_positive, default=200, help="expert demonstrations to record (200)"
        )
        data.add_argument(
            "--seed", type=int, default=0, help="seeds recording, split, training, evaluation (0)"
        )
        data.add_argument(
            "--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage of recorded bags (mcap)"
        )
        data.add_argument(
            "--val-fraction",
            type=float,
            default=0.2,
            help="share of bags held out, whole, for validation and the held-out score (0.2)",
        )
        add_mapping_arguments(parser)
        model = parser.add_argument_group("model and training")
        model.add_argument("--chunk", type=_positive, default=8, help="actions predicted per observation (8)")
        model.add_argument("--hidden", type=_positive, default=256, help="hidden layer width (256)")
        model.add_argument("--layers", type=_positive, default=3, help="hidden layers (3)")
        model.add_argument("--epochs", type=_positive, default=60, help="training epochs (60)")
        model.add_argument("--batch-size", type=_positive, default=256, help="samples per step (256)")
        model.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3)")
        model.add_argument(
            "--device", default="auto", help="auto (the GPU where present, else the CPU), cpu or cuda"
        )
        model.add_argument(
            "--threads",
            type=_positive,
            default=1,
            help="CPU threads for torch (1: a small MLP trains fastest on one; more only on an idle box)",
        )
        evaluation = parser.add_argument_group("evaluation and output")
        evaluation.add_argument(
            "--eval-episodes",
            type=_positive,
            default=200,
            help="simulated rollouts per success rate, for the project's own topics (200)",
        )
        evaluation.add_argument(
            "--execute", type=_positive, default=None, help="actions run open loop per chunk (default: all)"
        )
        evaluation.add_argument(
            "--out",
            type=Path,
            default=None,
            help=f"where to save the policy (default: {default_model_dir() / 'policy.pt'})",
        )

    def train(self, args: argparse.Namespace, *, report: Callable[[str], None]) -> dict[str, float]:
        """Read (or record the project's demonstrations), train, evaluate and save; return the metrics.

        ``--bag-dir`` bags are only read. The project's own demonstrations are recorded into a
        temporary folder, or into ``--record-demo DIR`` when asked for, never into ``--bag-dir``.

        Raises:
            ConfigError: bad options (``--bag-dir`` with ``--record-demo``, a non-empty
                ``--record-demo`` folder, ``--execute`` above ``--chunk``, a mapping that does
                not pair up or does not fit the bags' types), or bags that cannot be read, lack a
                mapped topic or hold a non-finite number in a mapped field; all before training.
        """
        from fogros_dist.workloads.policy.mapping import mapping_from_args

        self._check(args)
        demo = args.record_demo
        if demo is not None and demo.exists() and (not demo.is_dir() or any(demo.iterdir())):
            msg = (
                f"--record-demo {demo} is not a new or empty folder: it records the project's demonstrations "
                f"into one; give another, or train on the bags there with --bag-dir {demo}"
            )
            raise ConfigError(msg)
        return self._run(args, mapping_from_args(args), report, fleet=None)

    def _check(self, args: argparse.Namespace) -> None:
        """The options that exclude each other (one ConfigError line)."""
        if args.reuse_bags and args.bag_dir is None:
            msg = "--reuse-bags needs --bag-dir DIR: name the folder holding the bags"
            raise ConfigError(msg)
        if args.bag_dir is not None and args.record_demo is not None:
            msg = (
                "--bag-dir and --record-demo exclude each other: --bag-dir trains on your bags, "
                "--record-demo records the project's own; choose one"
            )
            raise ConfigError(msg)
        if args.execute is not None and args.execute > args.chunk:
            msg = f"--execute ({args.execute}) cannot exceed --chunk ({args.chunk}): use at most {args.chunk}"
            raise ConfigError(msg)

    def train_distributed(
        self,
        args: argparse.Namespace,
        *,
        report: Callable[[str], None],
        context: DistContext,
        keep_global_batch: bool,
        comm_hook: CommHook,
    ) -> dict[str, float]:
        """One rank of a data-parallel run (:mod:`fogros_dist.train.worker`): the same data on
        every rank (``--bag-dir``, which must be on every machine, or the expert's demonstrations
        recorded on each from the same seed, byte for byte the same), this rank's shard of it,
        DDP; rank 0 scores, saves and returns the metrics, the others return {}.

        Raises:
            ConfigError: as :meth:`train`; also ``--record-demo`` (only rank 0 writes, and a
                fleet's machines have folders of their own), or a ``--bag-dir`` this machine lacks.
        """
        from fogros_dist.workloads.policy.mapping import mapping_from_args

        if args.record_demo is not None:
            msg = (
                f"--record-demo {args.record_demo}: a fleet records on every machine, into folders of "
                "its own; record once without --nodes/--on, then train the fleet with --bag-dir on it"
            )
            raise ConfigError(msg)
        self._check(args)
        if args.bag_dir is not None and not args.bag_dir.is_dir():
            msg = (
                f"--bag-dir {args.bag_dir} is not a folder on machine {context.machine!r}: every machine "
                "of the fleet reads the bags at that path; copy them there, or train without --nodes/--on"
            )
            raise ConfigError(msg)
        fleet = _Fleet(context=context, keep_global_batch=keep_global_batch, comm_hook=comm_hook)
        return self._run(args, mapping_from_args(args), report, fleet=fleet)

    def _run(
        self,
        args: argparse.Namespace,
        choice: MappingChoice,
        report: Callable[[str], None],
        *,
        fleet: _Fleet | None,
    ) -> dict[str, float]:
        import torch

        # Measured on a shared 2-core box: 10 ms/step on one thread, 62 ms/step on two.
        previous = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            if args.bag_dir is not None:
                return self._train(args, choice, args.bag_dir, report, record=False, fleet=fleet)
            if args.record_demo is not None:
                return self._train(args, choice, args.record_demo, report, record=True, fleet=fleet)
            with tempfile.TemporaryDirectory(prefix="fogros-policy-bags-") as tmp:
                return self._train(args, choice, Path(tmp), report, record=True, fleet=fleet)
        finally:
            torch.set_num_threads(previous)

    def _record(self, args: argparse.Namespace, bag_dir: Path, report: Callable[[str], None]) -> None:
        from fogros_dist.workloads.policy.record import record_demonstrations
        from fogros_dist.workloads.policy.sim import ReachConfig

        report(f"recording {args.episodes} expert demonstrations ({args.storage}) in {bag_dir}")
        every = max(1, args.episodes // 5)

        def progress(done: int, total: int) -> None:
            if done % every == 0 or done == total:
                report(f"  {done}/{total} bags")

        record_demonstrations(
            out_dir=bag_dir,
            episodes=args.episodes,
            seed=args.seed,
            storage=args.storage,
            sim=ReachConfig(),
            progress=progress,
        )

    def _train(
        self,
        args: argparse.Namespace,
        choice: MappingChoice,
        bag_dir: Path,
        report: Callable[[str], None],
        *,
        record: bool,
        fleet: _Fleet | None = None,
    ) -> dict[str, float]:
        import numpy as np
        import torch

        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.device import resolve_device
        from fogros_dist.workloads.policy.bags import bag_topics, find_bags
        from fogros_dist.workloads.policy.dataset import (
            DEFAULT_MAPPING,
            ChunkDataset,
            Normalizer,
            read_episode,
            split_episodes,
        )
        from fogros_dist.workloads.policy.heldout import score_heldout
        from fogros_dist.workloads.policy.mapping import describe_mapping, resolve_mapping
        from fogros_dist.workloads.policy.model import ChunkPolicy, PolicyConfig, save_policy
        from fogros_dist.workloads.policy.sim import ReachConfig
        from fogros_dist.workloads.policy.train import TrainConfig

        if record:
            self._record(args, bag_dir, report)
        bags = find_bags(bag_dir)
        types = MessageTypes("jazzy")
        mapping = resolve_mapping(choice, bag=bags[0], recorded=bag_topics(bags[0]), types=types)
        # Every bag is read, and every mapped number checked finite, before training starts.
        episodes = [read_episode(bag, mapping=mapping) for bag in bags]
        report(f"mapping: {describe_mapping(mapping)}")
        train_eps, val_eps = split_episodes(episodes, val_fraction=args.val_fraction, seed=args.seed)
        normalizer = Normalizer.fit(train_eps)
        train_set = ChunkDataset(train_eps, chunk=args.chunk, normalizer=normalizer)
        val_set = ChunkDataset(val_eps, chunk=args.chunk, normalizer=normalizer)
        report(
            f"read {len(episodes)} bags at {mapping.rate_hz:g} Hz: {len(train_eps)} train episodes "
            f"({len(train_set)} samples), {len(val_eps)} held out ({len(val_set)})"
        )
        config = PolicyConfig(
            observation_dim=mapping.observation_dim,
            action_dim=mapping.action_dim,
            chunk=args.chunk,
            hidden=args.hidden,
            layers=args.layers,
        )
        torch.manual_seed(args.seed)  # initial weights too: one seed, one model, in any process
        device = resolve_device(args.device)
        model = ChunkPolicy(config, normalizer)
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        result, communication = _fit(
            model,
            train_set=train_set,
            val_set=val_set,
            config=train_config,
            device=device,
            report=report,
            fleet=fleet,
        )
        if fleet is not None and not fleet.context.is_main:
            report(f"train: done in {result.seconds:.1f} s (rank 0 scores and saves)")
            return {}
        # Scoring, rollouts, serving and the saved file use the CPU.
        model = model.to("cpu")
        heldout = score_heldout(model, val_set, bags=len(val_eps))
        report(f"held out: {heldout.describe()}")
        metrics = {
            "train_loss": result.train_loss,
            "val_loss": result.val_loss,
            "heldout_mse": heldout.policy_mse,
            "baseline_mean_action_mse": heldout.baseline_mse,
            "train_episodes": float(len(train_eps)),
            "val_episodes": float(len(val_eps)),
            "train_samples": float(len(train_set)),
            "train_seconds": result.seconds,
            **communication,
        }
        if fleet is not None:
            metrics["world_size"] = float(fleet.context.world_size)
        if mapping == DEFAULT_MAPPING:
            sim = ReachConfig()
            metrics.update(self._simulate(model, args, sim, report))
            action_low, action_high = sim.action_low, sim.action_high
        else:
            # No simulator knows this robot: the held-out score is the evidence, and the
            # commands the demonstrator gave bound what the policy may send.
            report("no simulator for these topics: judged on the held-out bags alone")
            actions = np.concatenate([e.actions for e in train_eps])
            action_low, action_high = actions.min(axis=0), actions.max(axis=0)
        out = args.out if args.out is not None else default_model_dir() / "policy.pt"
        save_policy(
            out,
            model=model,
            mapping=mapping,
            action_low=action_low,
            action_high=action_high,
            metrics=metrics,
        )
        # The fleet launcher finds the model rank 0 saved by this line (local_fleet.saved_model).
        report(f"saved {out}")
        return metrics

    def _simulate(
        self, model: ChunkPolicy, args: argparse.Namespace, sim: ReachConfig, report: Callable[[str], None]
    ) -> dict[str, float]:
        """Success rates of the policy and the expert in fresh simulated episodes."""
        from fogros_dist.workloads.policy.evaluate import evaluate_expert, evaluate_policy

        execute = args.execute or args.chunk
        report(
            f"evaluating over {args.eval_episodes} rollouts each "
            f"(open loop, replanning every {execute} steps)"
        )
        policy_rate = evaluate_policy(
            model.predict, episodes=args.eval_episodes, seed=args.seed, sim=sim, execute=execute
        )
        expert_rate = evaluate_expert(episodes=args.eval_episodes, seed=args.seed, sim=sim)
        report(f"  policy {policy_rate.describe()}; expert {expert_rate.describe()}")
        return {
            "success_rate": policy_rate.rate,
            "success_ci_low": policy_rate.low,
            "success_ci_high": policy_rate.high,
            "expert_success_rate": expert_rate.rate,
            "expert_ci_low": expert_rate.low,
            "expert_ci_high": expert_rate.high,
            "eval_episodes": float(args.eval_episodes),
        }

    def node_arguments(self, model_dir: Path) -> tuple[str, ...]:
        """``--ros-args -p model:=<model_dir>/policy.pt``."""
        return ("--ros-args", "-p", f"model:={model_dir / 'policy.pt'}")

    def bench_requests(self, *, count: int, seed: int) -> Iterator[BenchRequest]:
        """``count`` observations from expert trajectories (goal, then joint state), stamped one
        control period apart; the key is the joint state's stamp, which the command echoes."""
        from fogros_dist.ros.types import MessageTypes
        from fogros_dist.workloads.policy.messages import PolicyMessages
        from fogros_dist.workloads.policy.record import episode_seed
        from fogros_dist.workloads.policy.sim import ReachConfig, ReachEnv, ScriptedExpert, run_expert_episode

        state_spec, goal_spec = self.topics_in
        messages = PolicyMessages(MessageTypes("jazzy"))
        sim = ReachConfig()
        env = ReachEnv(sim)
        expert = ScriptedExpert(sim)
        period_ns = round(sim.dt * _NS)
        produced = 0
        episode = 0
        while produced < count:
            observations, _actions, _ok = run_expert_episode(
                env, expert, seed=episode_seed(seed, episode, stream=BENCH_STREAM)
            )
            episode += 1
            for obs in observations:
                if produced >= count:
                    break
                stamp = _BENCH_EPOCH_NS + produced * period_ns
                # Every request repeats the goal: a request is self-contained, whichever one a
                # benchmark starts with; the node replans only when the goal actually changes.
                goal = messages.goal(stamp=stamp, x=float(obs[4]), y=float(obs[5]))
                state = messages.joint_state(stamp=stamp, position=obs[0:2], velocity=obs[2:4])
                yield BenchRequest(messages=((goal_spec, goal), (state_spec, state)), key=stamp)
                produced += 1

    def reply_key(self, cdr: bytes) -> int:
        """The header stamp (ns) of a ``TwistStamped`` command: the joint state it answers."""
        if self._types is None:
            from fogros_dist.ros.types import MessageTypes

            # TwistStamped is laid out alike in every supported distribution.
            self._types = MessageTypes("jazzy")
        return stamp_ns(self._types.deserialize(TWIST_STAMPED, cdr).header)


def _fit(
    model: ChunkPolicy,
    *,
    train_set: ChunkDataset,
    val_set: ChunkDataset,
    config: TrainConfig,
    device: torch.device,
    report: Callable[[str], None],
    fleet: _Fleet | None,
) -> tuple[TrainResult, dict[str, float]]:
    """Train in this process, or as the fleet's rank; the result and the communication figures."""
    from fogros_dist.workloads.policy.train import train_policy

    if fleet is not None:
        return fleet.train(
            model, train_set=train_set, val_set=val_set, config=config, device=device, report=report
        )
    report(f"training on {device}")
    result = train_policy(
        model.to(device), train=train_set, val=val_set, config=config, report=lambda line: report(f"  {line}")
    )
    return result, {}


@dataclass(frozen=True)
class _Fleet:
    """A fleet rank's part of the run: its place, the batch rule and the gradient exchange."""

    context: DistContext
    keep_global_batch: bool
    comm_hook: CommHook

    def train(
        self,
        model: ChunkPolicy,
        *,
        train_set: ChunkDataset,
        val_set: ChunkDataset,
        config: TrainConfig,
        device: torch.device,
        report: Callable[[str], None],
    ) -> tuple[TrainResult, dict[str, float]]:
        """Join the process group, train this rank's shard in DDP; the result and the per-step
        communication figures (averaged over the ranks)."""
        from dataclasses import replace

        from fogros_dist.train.checkpoint import Checkpointer
        from fogros_dist.train.context import join_run
        from fogros_dist.train.data_parallel import data_parallel
        from fogros_dist.workloads.policy.train import train_policy

        context = self.context
        device = join_run(context, device, report)
        model.to(device)
        trained: nn.Module = model
        meter: CommMeter | None = None
        after_step: Callable[[bool], None] | None = None
        sampler = None
        if context.distributed:
            parallel = data_parallel(
                model,
                train_set,
                context=context,
                device=device,
                batch_size=config.batch_size,
                learning_rate=config.lr,
                seed=config.seed,
                keep_global_batch=self.keep_global_batch,
                comm_hook=self.comm_hook,
            )
            config = replace(
                config,
                batch_size=parallel.plan.per_rank_batch,
                lr=parallel.plan.learning_rate,
                warmup_fraction=parallel.plan.warmup_fraction,
            )
            trained, sampler, meter = parallel.model, parallel.sampler, parallel.meter
            after_step = parallel.after_step
            report(f"train: {parallel.describe(context, len(train_set))}")
        result = train_policy(
            trained,
            train=train_set,
            val=val_set,
            config=config,
            sampler=sampler,
            report=report if context.is_main else None,
            checkpoint=Checkpointer.from_env(context),
            meter=meter,
            after_step=after_step,
        )
        communication = meter.summary_across_ranks(device).as_metrics() if meter is not None else {}
        return result, communication
