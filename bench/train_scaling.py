"""Data-parallel training over shaped links: 1, 2 and 3 hosts, every gradient communication hook,
two widths of the grasp network.

Each host is a network namespace on one Linux bridge (a lab LAN: ``10.234.<n>.0/24``), whose
egress into the LAN is ``tc tbf`` at the link rate (50 and 200 Mbit/s by default). On each host a
real torchrun agent (``fogros_dist.train.local_fleet.agent_argv``: c10d rendezvous on the first
host, ``--local-addr`` and ``GLOO_SOCKET_IFNAME`` on the LAN) runs ``fogros_dist.train.worker grasp``
with ``--comm-hook HOOK``: the same agents and workers ``fogros-dist train grasp --on FLEET`` starts
on every machine, without the SSH and deployment around them (which cost start-up time, not step
time). Rank 0's metrics give step time split into compute and communication (the comm meter's
timing), payload bytes per step (measured on the collectives, ``fogros_dist.train.comm_meter``),
samples/s and the held-out accuracy after every epoch; time to target is the training time (the
epochs' own durations, evaluation not counted) up to the first epoch whose held-out accuracy meets
the target, as the run report computes it (``fogros_dist.train.run_report``). The target is one
host's final accuracy with the same network less 1 point, unless ``--target`` gives one. The
runs the default width's 3x verdicts turn on (2 and 3 hosts at 50 Mbit/s: none, PowerSGD, local
SGD at periods 8 and 16) run ``--repeats`` times (3) and count by their median time to target.

The global batch is the same on every world size (``--keep-global-batch``). The network is run
at its default width (``--hidden 64``) and at a wider head (``--hidden 256``), whose gradients
weigh more than its compute: which hook pays depends on that balance, so both are measured.

This machine has 2 CPUs shared by every rank, so compute cannot scale here: scaling efficiency
(samples/s of N hosts over N x one host's) measures the link and the CPUs together, and the
compute-bound figure needs a machine with a core (or GPU) per rank.

Usage: sudo .venv/bin/python bench/train_scaling.py [--quick] [--repeats N]
Writes bench/results/train_scaling.json, bench/results/train_scaling.png and the table in
BENCHMARKS.md between ``<!-- train_scaling:begin -->`` / ``<!-- train_scaling:end -->``.
Every process it starts is stopped by PID; the namespaces and the bridge are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks_md import write_table  # a sibling: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "train_scaling.json"
PLOT = ROOT / "bench" / "results" / "train_scaling.png"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

# Local SGD at its default period (8) and at 16: how far its one knob goes on a slow link.
HOOKS = ("none", "fp16", "bf16", "powersgd", "topk", "sketch", "localsgd", "localsgd:16")
_PREFIX = "fdts"
_TBF = ("burst", "32kbit", "latency", "100ms")
# The grasp run: small enough for 2 CPUs, large enough that accuracy separates the hooks. The
# global batch stays 64 on every world size (--keep-global-batch), so N hosts take the same
# optimizer steps as one and "the same accuracy with the same epochs" compares like with like;
# 100 held-out scenes (6,400 grasps) keep the accuracy's sampling error near half a point.
WORKLOAD = [
    "grasp", "--scenes", "80", "--eval-scenes", "100", "--grasps-per-scene", "32", "--epochs", "8",
    "--plan-images", "0", "--batch-size", "64", "--keep-global-batch",
]  # fmt: skip
QUICK_WORKLOAD = [
    "grasp", "--scenes", "24", "--eval-scenes", "8", "--grasps-per-scene", "16", "--epochs", "1",
    "--plan-images", "0", "--batch-size", "64", "--keep-global-batch",
]  # fmt: skip
# Widths of the grasp network's fully connected layers: the default (a 52,577-parameter
# network, whose all-reduce a 50 Mbit/s link carries in a few tens of ms) and a wider head, a
# quarter of Dex-Net 2.0's 1024, for a network whose gradients outweigh its compute on 2 CPUs.
WIDTHS = (64, 256)
# The runs the 3x verdicts at the default width turn on, each repeated (--repeats) and reported
# by its median time to target: seeded, single-threaded training makes each run's accuracies
# epoch by epoch the same every time, but its epochs' durations move with this shared machine's
# load by 10-30 %, as much as the margin the verdicts are about.
_CONTENDERS = ("none", "powersgd", "localsgd", "localsgd:16")
REPEATED = {(64, "50mbit", hosts, hook) for hosts in (2, 3) for hook in _CONTENDERS}
TARGET_BYTES_RATIO = 8.0  # PowerSGD: at least 8x fewer bytes per step than none
TARGET_TIME_RATIO = 3.0  # on 50 Mbit/s: best hook reaches the target 3x sooner
ACCURACY_SLACK = 0.01


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        msg = f"{' '.join(argv)}: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return done


@dataclass
class Lan:
    """``count`` namespaces on one bridge, each host's egress shaped to ``rate``."""

    tag: str
    count: int
    subnet: int

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    def netns(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def address(self, i: int) -> str:
        return f"10.234.{self.subnet}.{i + 2}"

    def up(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "link", "set", self.bridge, "up"])
        for i in range(self.count):
            ns, near, far = self.netns(i), f"{self.tag}v{i}", f"{self.tag}h{i}"
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", near, "type", "veth", "peer", "name", far])
            _run(["ip", "link", "set", far, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", far, "name", "lan0"])
            _run(["ip", "link", "set", near, "master", self.bridge])
            _run(["ip", "link", "set", near, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "lan0"])
            _run(["ip", "-n", ns, "link", "set", "lan0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def shape(self, rate: str) -> None:
        for i in range(self.count):
            _run(["ip", "netns", "exec", self.netns(i), "tc", "qdisc", "replace", "dev", "lan0", "root",
                  "tbf", "rate", rate, *_TBF])  # fmt: skip

    def down(self) -> None:
        for i in range(self.count):
            ns = self.netns(i)
            for pid in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", ns], check=False)
            _run(["ip", "link", "del", f"{self.tag}v{i}"], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)


@contextlib.contextmanager
def lan(count: int) -> Iterator[Lan]:
    tag = f"{_PREFIX}{os.getpid() % 10000}"
    made = Lan(tag=tag, count=count, subnet=os.getpid() % 200 + 20)
    made.down()  # a crashed run's, same PID
    try:
        made.up()
        yield made
    finally:
        made.down()


def _shape_argument(rate: str) -> str:
    # `tc` wants e.g. "50mbit"; a clean label for the table.
    return rate.replace("mbit", " Mbit/s")


def run_one(
    net: Lan, hosts: int, hook: str, *, workload: list[str], workdir: Path, timeout: float
) -> dict[str, Any]:
    """One training run on the first ``hosts`` namespaces; rank 0's metrics plus the wall time."""
    from fogros_dist.train.local_fleet import agent_argv
    from fogros_dist.train.options import FleetOptions, NodeRange

    options = FleetOptions(nodes=NodeRange(hosts, hosts))
    run_id = f"bench-{os.getpid()}-{hosts}-{hook}-{time.monotonic_ns()}"
    endpoint = f"{net.address(0)}:29400"
    procs: list[subprocess.Popen[str]] = []
    started = time.monotonic()
    try:
        for i in range(hosts):
            where = workdir / run_id / f"m{i}"
            where.mkdir(parents=True)
            argv = agent_argv(
                workload_argv=[*workload, "--comm-hook", hook],
                options=options,
                endpoint=endpoint,
                run_id=run_id,
                is_host=i == 0,
                log_dir=where / "torchelastic",
                local_addr=net.address(i),
            )
            env = dict(
                os.environ,
                OMP_NUM_THREADS="1",
                GLOO_SOCKET_IFNAME="lan0",
                TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
                PYTHONUNBUFFERED="1",
                FOGROS_DIST_MACHINE=f"m{i}",
                FOGROS_DIST_MODELS=str(where / "models"),
                FOGROS_DIST_CHECKPOINT_DIR=str(where / "checkpoints"),
            )
            # The head's lines are read at the end; every other host's go to its agent.log: a
            # pipe nobody reads would stop that host's agent mid-write once 64 KiB of
            # tracebacks and warnings filled it.
            with open(where / "agent.log", "w") as log:  # the agent keeps its own copy open
                procs.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", net.netns(i), *argv],
                        cwd=where,
                        env=env,
                        stdout=subprocess.PIPE if i == 0 else log,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,
                    )
                )
        out, _ = procs[0].communicate(timeout=timeout)
        for proc in procs[1:]:
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.monotonic() - started
    metrics = next(
        (
            json.loads(line.split("metrics ", 1)[1])
            for line in out.splitlines()
            if line.startswith("metrics ")
        ),
        None,
    )
    if metrics is None:
        tail = "\n".join(out.splitlines()[-15:])
        msg = f"{hosts} host(s), hook {hook}: no metrics from rank 0 (exit {procs[0].returncode}):\n{tail}"
        raise RuntimeError(msg)
    from fogros_dist.train.run_report import parse_progress

    epochs = parse_progress(out.splitlines())
    # Rank 0's epoch lines: samples/s of the whole world (the loop all-reduces each epoch's count).
    rates = [e.samples_per_second for e in epochs]
    return {
        "hosts": hosts,
        "hook": hook,
        "wall_s": round(wall, 1),
        "metrics": metrics,
        "samples_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        # Each with rank 0's held-out evaluation after it: the time to target comes from them.
        "epochs": [e.to_dict() for e in epochs],
    }


def _plan(quick: bool) -> list[tuple[int, str, int, str]]:
    """(network width, link rate, hosts, hook) of each run, in order (runs of one rate together)."""
    narrow, wide = WIDTHS
    if quick:
        return [
            (narrow, "50mbit", 1, "none"),
            (narrow, "50mbit", 2, "none"),
            (narrow, "50mbit", 2, "powersgd"),
        ]
    plan = [(narrow, "50mbit", 1, "none")]
    plan += [(narrow, "50mbit", hosts, hook) for hosts in (2, 3) for hook in HOOKS]
    plan += [(wide, "50mbit", 1, "none")]
    plan += [(wide, "50mbit", 2, hook) for hook in ("none", "fp16", "powersgd", "topk", "localsgd")]
    fast = ("none", "fp16", "powersgd", "localsgd")
    plan += [(narrow, "200mbit", hosts, hook) for hosts in (2, 3) for hook in fast]
    return plan


def _parameters(width: int) -> int:
    from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig

    return sum(p.numel() for p in GQCNN(ModelConfig(hidden=width)).parameters())


def _target_for(rows: list[dict[str, Any]], width: int, given: float | None) -> float | None:
    """The held-out accuracy the time to target counts to: ``given``, else what one host reaches
    at the end with this network, less the issue's 1 point (same run)."""
    if given is not None:
        return given
    single = next((r for r in rows if r["width"] == width and r["hosts"] == 1), None)
    accuracy = single["metrics"].get("heldout_accuracy") if single else None
    return round(accuracy - ACCURACY_SLACK, 4) if accuracy is not None else None


def _time_to_target(run: dict[str, Any], target: float) -> float | None:
    """Training seconds until the first epoch whose held-out accuracy met ``target`` (the run
    report's figure: evaluation time is not counted); None when no epoch met it."""
    from fogros_dist.train.run_report import EpochRecord, RunReport, TargetMetric

    report = RunReport(
        epochs=[EpochRecord(**e) for e in run["epochs"]],
        final_metrics=run["metrics"],
        target=TargetMetric(name="heldout_accuracy", value=target),
    )
    value = report.time_to_target()["value"]
    return None if value is None else float(value)


def _median_repeat(row: dict[str, Any], target: float | None) -> dict[str, Any]:
    """The row for a repeated run: the repeat with the median time to target (the lower middle
    of an even count; a repeat that never met it counts as the slowest), with every repeat's
    time to target and wall time beside it."""
    runs = [row, *row.pop("repeats", [])]
    if len(runs) == 1 or target is None:
        return row
    times = [_time_to_target(r, target) for r in runs]
    order = sorted(range(len(runs)), key=lambda i: float("inf") if times[i] is None else times[i])
    chosen = runs[order[(len(runs) - 1) // 2]]
    chosen["repeat_times_to_target_s"] = [None if t is None else round(t, 2) for t in times]
    chosen["repeat_wall_s"] = [r["wall_s"] for r in runs]
    return chosen


def _figures(run: dict[str, Any], single: dict[str, Any] | None, target: float | None) -> dict[str, Any]:
    m = run["metrics"]
    comm, compute = m.get("comm_seconds_per_step"), m.get("compute_seconds_per_step")
    step = comm + compute if comm is not None and compute is not None else None
    sps = run.get("samples_per_s")
    base = single.get("samples_per_s") if single else None
    accuracy = m.get("heldout_accuracy")
    reached = _time_to_target(run, target) if target is not None else None
    trained = run["epochs"][-1]["seconds"] if run["epochs"] else None
    return {
        "step_ms": round(step * 1e3, 2) if step is not None else None,
        "comm_share": round(comm / step, 3) if step else None,
        "bytes_per_step": m.get("bytes_per_step"),
        # After PowerSGD's first uncompressed steps: what every later step sends.
        "bytes_last_step": m.get("bytes_last_step"),
        "written_bytes_per_step": m.get("written_bytes_per_step"),
        "samples_per_s": round(sps, 1) if sps is not None else None,
        "scaling_efficiency": round(sps / (run["hosts"] * base), 3) if sps and base else None,
        # The epochs' own durations, summed as for the time to target (no evaluation in it).
        "train_s": round(trained, 1) if trained is not None else None,
        "time_to_target_s": round(reached, 2) if reached is not None else None,
        "heldout_accuracy": round(accuracy, 4) if accuracy is not None else None,
    }


def _within(accuracy: float | None, baseline: float | None) -> bool:
    return accuracy is not None and baseline is not None and accuracy >= baseline - ACCURACY_SLACK


def _verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(width: int, rate: str, hosts: int, hook: str) -> dict[str, Any] | None:
        key = (width, rate, hosts, hook)
        return next((r for r in rows if (r["width"], r["rate"], r["hosts"], r["hook"]) == key), None)

    out: dict[str, Any] = {}
    for width, hosts in sorted({(r["width"], r["hosts"]) for r in rows if r["hosts"] > 1}):
        none, power = find(width, "50mbit", hosts, "none"), find(width, "50mbit", hosts, "powersgd")
        if none is None or power is None:
            continue
        where = f"width {width}, {hosts} hosts"
        nb, pb = none["figures"]["bytes_last_step"], power["figures"]["bytes_last_step"]
        na, pa = none["figures"]["heldout_accuracy"], power["figures"]["heldout_accuracy"]
        ratio = nb / pb if nb and pb else None
        out[f"powersgd_bytes_width_{width}_{hosts}_hosts"] = {
            "where": where,
            "ratio": round(ratio, 1) if ratio else None,
            "accuracy_delta": round(pa - na, 4) if pa is not None and na is not None else None,
            "met": bool(ratio and ratio >= TARGET_BYTES_RATIO and _within(pa, na)),
        }
        times = {
            r["hook"]: r["figures"]["time_to_target_s"]
            for r in rows
            if (r["width"], r["rate"], r["hosts"]) == (width, "50mbit", hosts)
            and r["figures"]["time_to_target_s"]
        }
        base = times.get("none")
        best = min(((t, h) for h, t in times.items() if h != "none"), default=None)
        out[f"time_to_target_width_{width}_{hosts}_hosts_50mbit"] = {
            "where": where,
            "target": none["target"],
            "none_s": base,
            "best_hook": best[1] if best else None,
            "best_s": best[0] if best else None,
            "ratio": round(base / best[0], 2) if base and best else None,
            "met": bool(base and best and base / best[0] >= TARGET_TIME_RATIO),
        }
    return out


def _time_cell(row: dict[str, Any]) -> str:
    """``8.82`` or, for a repeated run, ``8.82 (8.75-9.4, 3 runs)``: the median and the range."""
    median = row["figures"]["time_to_target_s"]
    times = row.get("repeat_times_to_target_s")
    if median is None:
        return "-"
    if not times:
        return str(median)
    met = [t for t in times if t is not None]
    return f"{median} ({min(met)}-{max(met)}, {len(times)} runs)"


def _markdown(data: dict[str, Any]) -> str:
    yes = {True: "met", False: "**not met**"}
    meta = data["meta"]
    widths = ", ".join(f"{w} ({n:,} parameters)" for w, n in meta["parameters"].items())
    lines = [
        f"Hosts: network namespaces on one bridge, each host's egress `tc tbf rate R burst 32kbit latency "
        f"100ms`; the same torchrun agents and workers `--on FLEET` runs on each machine (no SSH or "
        f"deployment around them). Workload: `{' '.join(meta['workload'])}` with `--hidden W`, the width "
        f"of the network's fully connected layers: {widths}. Held-out accuracy after every epoch; time to "
        f"target = training seconds to the first epoch at the target, which is "
        f"{meta['target_rule']}; where a row says `runs`, the median of its repeats (the runs the "
        f"width-64 verdicts turn on, whose epochs' durations move with this shared machine's load). "
        f"{meta['cpus']} CPUs shared by every rank, so compute does not scale here "
        f"(scaling efficiency below is link and CPUs together); run took {meta['duration_s']:g} s.",
        "",
        "| width | link | hosts | hook | step ms | comm share | payload bytes/step (mean / last) "
        "| written B/step | samples/s | scaling eff. | train s | held-out acc. | target | time to target s |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        f = r["figures"]

        def cell(v: Any) -> str:
            if v is None:
                return "-"
            return f"{v:,.0f}" if isinstance(v, float | int) and v > 1000 else str(v)

        lines.append(
            f"| {r['width']} | {_shape_argument(r['rate'])} | {r['hosts']} | {r['hook']} | "
            f"{cell(f['step_ms'])} | {cell(f['comm_share'])} | "
            f"{cell(f['bytes_per_step'])} / {cell(f['bytes_last_step'])} | "
            f"{cell(f['written_bytes_per_step'])} | "
            f"{cell(f['samples_per_s'])} | {cell(f['scaling_efficiency'])} | {cell(f['train_s'])} | "
            f"{cell(f['heldout_accuracy'])} | {cell(r['target'])} | {_time_cell(r)} |"
        )
    lines += ["", "Targets (issue 10):", ""]
    for key, v in data["verdicts"].items():
        if key.startswith("powersgd_bytes"):
            lines.append(
                f"- PowerSGD >= {TARGET_BYTES_RATIO:g}x fewer bytes per step (after its warm-up steps) than "
                f"none, accuracy within 1 point ({v['where']}, 50 Mbit/s): {yes[v['met']]} "
                f"({v['ratio']}x, held-out accuracy {v['accuracy_delta'] * 100:+.1f} points)"
                if v["accuracy_delta"] is not None
                else f"- PowerSGD bytes ({v['where']}): {yes[v['met']]}"
            )
        else:
            lines.append(
                f"- time to target >= {TARGET_TIME_RATIO:g}x shorter with the best hook on 50 Mbit/s "
                f"({v['where']}, target {v['target']}): {yes[v['met']]} (none {v['none_s']} s, best "
                f"{v['best_hook']} {v['best_s']} s, {v['ratio']}x)"
            )
    lines.append(
        "- compute-bound scaling efficiency >= 0.9: not measurable here (2 CPUs for every rank); "
        "it needs a machine with a core or GPU per rank (bench/train_compute_scaling.py)."
    )
    return "\n".join(lines)


def _plot(data: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for width, rate, hosts in sorted({(r["width"], r["rate"], r["hosts"]) for r in data["rows"]}):
        if hosts > 1:
            rows = [r for r in data["rows"] if (r["width"], r["rate"], r["hosts"]) == (width, rate, hosts)]
            label = f"width {width}, {_shape_argument(rate)}, {hosts} hosts"
            # Hooks at fixed positions: every series on the same axis, in HOOKS' order.
            where = [HOOKS.index(r["hook"]) for r in rows]
            left.plot(where, [r["figures"]["bytes_last_step"] or 0 for r in rows], "o-", label=label)
            right.plot(where, [r["figures"]["step_ms"] or 0 for r in rows], "o-", label=label)
    left.set_yscale("log")
    left.set_ylabel("payload bytes per step, steady state")
    right.set_ylabel("step time, ms")
    for ax in (left, right):
        ax.set_xticks(range(len(HOOKS)), HOOKS)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("grasp data-parallel: gradient communication hooks over shaped links")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _write_benchmarks_md(table: str) -> None:
    intro = (
        "\n\n## Data-parallel training over shaped links\n\n"
        "`sudo .venv/bin/python bench/train_scaling.py` (`--quick` for a try) trains the grasp model on 1, 2 "
        "and 3 hosts with every gradient communication hook. Raw JSON: `bench/results/train_scaling.json`; "
        "plot: `bench/results/train_scaling.png`.\n\n"
    )
    write_table(BENCHMARKS_MD, "train_scaling", table, intro)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="three short runs (a try, not the table)")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="held-out accuracy target (default: one host's final accuracy with the same network, "
        "less 1 point)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run (default 600)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each configuration the width-64 3x verdicts turn on, reported by the median "
        "time to target (default 3)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("error: needs root (network namespaces, a bridge and tc): run with sudo", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    workload = QUICK_WORKLOAD if args.quick else WORKLOAD
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with tempfile.TemporaryDirectory(prefix="fogros-scaling-") as tmp, lan(3) as net:
            shaped = ""
            for width, rate, hosts, hook in _plan(args.quick):
                if rate != shaped:
                    net.shape(rate)
                    shaped = rate
                print(
                    f"width {width}, {_shape_argument(rate)}: {hosts} host(s), hook {hook}",
                    file=sys.stderr,
                    flush=True,
                )
                repeated = (width, rate, hosts, hook) in REPEATED and not args.quick
                count = max(1, args.repeats) if repeated else 1
                runs = [
                    run_one(
                        net,
                        hosts,
                        hook,
                        workload=[*workload, "--hidden", str(width)],
                        workdir=Path(tmp),
                        timeout=args.timeout,
                    )
                    for _ in range(count)
                ]
                run = {**runs[0], "rate": rate, "width": width, "repeats": runs[1:]}
                rows.append(run)
    except KeyboardInterrupt:
        print("interrupted: every process stopped, the namespaces removed", file=sys.stderr)
        return 130
    for index, row in enumerate(rows):
        # One host's run, which sets the target, is never repeated: its row stays as it is.
        target = _target_for(rows, row["width"], args.target)
        rows[index] = {
            **_median_repeat(row, target),
            "rate": row["rate"],
            "width": row["width"],
            "target": target,
        }
    for row in rows:
        single = next((r for r in rows if r["hosts"] == 1 and r["width"] == row["width"]), None)
        row["figures"] = _figures(row, single, row["target"])
    meta = {
        "workload": workload,
        "parameters": {str(w): _parameters(w) for w in sorted({r["width"] for r in rows})},
        "target_rule": f"{args.target:g}"
        if args.target is not None
        else "one host's final held-out accuracy with the same network, less 1 point (same run)",
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duration_s": round(time.monotonic() - t0, 1),
    }
    data = {"meta": meta, "rows": rows, "verdicts": _verdicts(rows)}
    target = RESULTS.with_name("train_scaling_quick.json") if args.quick else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1) + "\n")
    table = _markdown(data)
    print(table)
    if not args.quick:
        _plot(data, PLOT)
        _write_benchmarks_md(table)
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
