"""Compute-bound scaling of `fogros-dist train grasp --nodes N`: every rank on compute of its own.

bench/train_scaling.py shapes the links between hosts on a 2-CPU machine, where every rank shares
the same two cores, so its scaling efficiency measures the link and the CPUs together. This script
measures the other regime: the user's own command, ``fogros-dist train grasp --nodes N`` (N Local
machines on this host: real torchrun agents, c10d rendezvous, gloo over loopback), with each rank
given ``--threads`` cores of its own (N x threads <= the machine's cores), and, where CUDA is
present, the same training on the GPU (one rank per GPU: NCCL where there are several; with one
GPU the run is one rank, and the multi-GPU figure says it needs a machine of several GPUs).

Scaling efficiency is samples/s of N ranks over N x samples/s of one rank (the run report's
time-weighted epoch samples/s, rank 0's log): weak scaling, each rank keeping the user's batch
(the default linear rule). Target: >= 0.9.

Usage: .venv/bin/python bench/train_compute_scaling.py [--ranks 1,2,4] [--threads 3]
Writes bench/results/train_compute_scaling.json and the table in BENCHMARKS.md between
``<!-- train_compute_scaling:begin -->`` / ``<!-- train_compute_scaling:end -->``.
Each run is a child process, stopped by PID (its process group) on a timeout or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "train_compute_scaling.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
TARGET_EFFICIENCY = 0.9
REPORT_LINE = re.compile(r"^train: report (?P<json>\S+report\.json) and ")
INTRO = """## Data-parallel training, compute-bound

`.venv/bin/python bench/train_compute_scaling.py` runs `fogros-dist train grasp --nodes N` with
each rank on cores of its own (`--threads` per rank, N x threads <= cores) and, where CUDA is
present, on the GPU. Scaling efficiency = samples/s(N) / (N x samples/s(1)), weak scaling (each
rank keeps the batch). Target >= 0.9. Raw JSON: `bench/results/train_compute_scaling.json`."""


def train_argv(ranks: int, *, device: str, threads: int, workload: dict[str, int], out: Path) -> list[str]:
    """The user's command for one run (``ranks`` Local machines; on CUDA, ranks per machine)."""
    argv = [sys.executable, "-m", "fogros_dist.cli.main", "train", "grasp", "--json"]
    if device == "cuda" and ranks > 1:
        argv += ["--nodes", "1", "--nproc-per-node", str(ranks)]
    else:
        argv += ["--nodes", str(ranks)]
    argv += ["--device", device, "--threads", str(threads), "--out", str(out)]
    for option, value in workload.items():
        argv += [f"--{option.replace('_', '-')}", str(value)]
    return argv


def run_one(argv: list[str], *, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one training; its final metrics and its report's figures, or why it failed."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-3:]
        return {"ok": False, "exit_code": proc.returncode, "why": " | ".join(tail), "wall_seconds": wall}
    metrics = json.loads(stdout)
    report_path = next((m["json"] for line in stderr.splitlines() if (m := REPORT_LINE.match(line))), None)
    figures = json.loads(Path(report_path).read_text())["figures"] if report_path else {}
    sps = figures.get("samples_per_second", {}).get("value")
    return {
        "ok": True,
        "wall_seconds": wall,
        "samples_per_second": sps,
        "world_size": metrics.get("world_size", 1.0),
        "compute_seconds_per_step": metrics.get("compute_seconds_per_step"),
        "comm_seconds_per_step": metrics.get("comm_seconds_per_step"),
        "heldout_accuracy": metrics.get("heldout_accuracy"),
        "plan_ms_median": metrics.get("plan_ms_median"),
    }


def cuda_devices() -> int:
    """How many CUDA devices torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def efficiencies(rows: list[dict[str, Any]]) -> None:
    """Each row's scaling efficiency against the one-rank row of its device."""
    for device in {r["device"] for r in rows}:
        same = [r for r in rows if r["device"] == device and r["ok"]]
        one = next((r for r in same if r["ranks"] == 1), None)
        for row in same:
            if one and one["samples_per_second"]:
                row["scaling_efficiency"] = row["samples_per_second"] / (
                    row["ranks"] * one["samples_per_second"]
                )


def markdown(data: dict[str, Any]) -> str:
    """The BENCHMARKS.md table."""
    meta = data["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['cpus']} CPUs, {meta['gpus']} GPU(s) "
        f"({meta['gpu_name'] or 'none'}), torch {meta['torch']}, Python {meta['python']}; "
        f"workload {meta['workload']}, {meta['threads']} threads per CPU rank.",
        "",
        "| device | ranks | samples/s | scaling efficiency | compute s/step | comm s/step "
        "| held-out acc | planner ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        if not r["ok"]:
            lines.append(f"| {r['device']} | {r['ranks']} | failed: {r['why']} | | | | | |")
            continue
        eff = r.get("scaling_efficiency")
        lines.append(
            f"| {r['device']} | {r['ranks']} | {r['samples_per_second']:.0f} | "
            f"{'-' if eff is None else f'{eff:.2f}'} | {_num(r['compute_seconds_per_step'], 4)} | "
            f"{_num(r['comm_seconds_per_step'], 4)} | {_num(r['heldout_accuracy'], 3)} | "
            f"{_num(r['plan_ms_median'], 1)} |"
        )
    lines += ["", *data["verdicts"]]
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdicts(rows: list[dict[str, Any]], gpus: int) -> list[str]:
    """One line per claim: met or not, on which path."""
    out = []
    cpu = [
        r for r in rows if r["device"] == "cpu" and r["ok"] and r["ranks"] > 1 and "scaling_efficiency" in r
    ]
    if cpu:
        worst = min(cpu, key=lambda r: r["scaling_efficiency"])
        met = "met" if worst["scaling_efficiency"] >= TARGET_EFFICIENCY else "NOT met"
        out.append(
            f"- CPU ranks on cores of their own: lowest efficiency {worst['scaling_efficiency']:.2f} at "
            f"{worst['ranks']} ranks (target {TARGET_EFFICIENCY}: {met})."
        )
    gpu = [
        r for r in rows if r["device"] == "cuda" and r["ok"] and r["ranks"] > 1 and "scaling_efficiency" in r
    ]
    if gpu:
        worst = min(gpu, key=lambda r: r["scaling_efficiency"])
        met = "met" if worst["scaling_efficiency"] >= TARGET_EFFICIENCY else "NOT met"
        out.append(
            f"- GPUs: lowest efficiency {worst['scaling_efficiency']:.2f} at {worst['ranks']} ranks "
            f"(target: {met})."
        )
    elif gpus == 1:
        out.append(
            "- GPUs: one GPU here, so multi-GPU scaling was not measured (needs a machine of several GPUs)."
        )
    elif gpus == 0:
        out.append("- GPUs: none here; the CUDA rows need a machine with one.")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ranks", default="1,2,4", help="CPU rank counts (default 1,2,4)")
    parser.add_argument("--threads", type=int, default=3, help="torch threads per CPU rank (default 3)")
    parser.add_argument("--scenes", type=int, default=400, help="training scenes (default 400)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run (default 300)")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; write neither JSON nor BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    try:
        ranks = [int(n) for n in args.ranks.split(",")]
    except ValueError:
        print(f"error: --ranks {args.ranks!r} is not a list of integers: use e.g. 1,2,4", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    if max(ranks) * args.threads > cores or 1 not in ranks:
        print(
            f"error: --ranks {args.ranks} x --threads {args.threads} needs {max(ranks) * args.threads} "
            f"cores and a one-rank baseline; this machine has {cores}: lower them and include 1",
            file=sys.stderr,
        )
        return 2
    import torch

    gpus = cuda_devices()
    workload = {"scenes": args.scenes, "eval_scenes": 100, "epochs": args.epochs}
    plan = [("cpu", n) for n in ranks] + [("cuda", n) for n in range(1, gpus + 1)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="fogros-compute-scaling-") as tmp:
            env.setdefault("FOGROS_DIST_HOME", str(Path(tmp) / "home"))
            for device, n in plan:
                print(f"{device}: {n} rank(s)", file=sys.stderr, flush=True)
                out = Path(tmp) / f"grasp-{device}-{n}.pt"
                cmd = train_argv(n, device=device, threads=args.threads, workload=workload, out=out)
                row = run_one(cmd, env=env, timeout=args.timeout)
                rows.append({"device": device, "ranks": n, "argv": cmd[1:], **row})
                print(f"  {json.dumps(rows[-1], default=str)[:300]}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: the run in flight was stopped", file=sys.stderr)
        return 130
    efficiencies(rows)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "workload": workload,
        "threads": args.threads,
        "cpus": cores,
        "gpus": gpus,
        "gpu_name": torch.cuda.get_device_name(0) if gpus else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duration_s": round(time.monotonic() - t0, 1),
    }
    data = {"meta": meta, "rows": rows, "verdicts": verdicts(rows, gpus)}
    table = markdown(data)
    print(table)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
        sys.path.insert(0, str(ROOT / "bench"))
        from benchmarks_md import write_table

        write_table(BENCHMARKS, "train_compute_scaling", table, INTRO)
        print(f"wrote {RESULTS} and {BENCHMARKS}", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
