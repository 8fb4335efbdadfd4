"""`fogros-dist train policy --nodes 2`: a lab's own bags trained data-parallel on two Local
machines (real torchrun agents, c10d, gloo), as well as on one, and read, never written.

The bags are the lab's (lab_bags.py: JointState at 50 Hz, Twist at 20 Hz, written with rosbags
alone); both machines read them at the same path, each trains its DistributedSampler shard.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_processes import training_processes
from lab_bags import CMD_TOPIC, STATE_TOPIC, snapshot, write_lab_bags

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]
LAB_MAPPING = [
    *("--obs-topic", STATE_TOPIC, "--obs-fields", "position[0],position[1],velocity[0],velocity[1]"),
    *("--action-topic", CMD_TOPIC, "--action-fields", "linear.x,linear.y"),
    *("--rate", "20", "--time", "receive"),
]
EPOCHS = 20


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ, FOGROS_DIST_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"
    )


def _train(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "train", "policy", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_two_local_machines_train_a_labs_bags_as_well_as_one_and_leave_them_untouched(
    env: dict[str, str], tmp_path: Path
) -> None:
    bags = tmp_path / "lab_bags"
    write_lab_bags(bags, count=12)
    before = snapshot(bags)
    common = ["--bag-dir", str(bags), *LAB_MAPPING, "--epochs", str(EPOCHS), "--json"]
    one = _train(env, *common, "--out", str(tmp_path / "one.pt"))
    assert one.returncode == 0, one.stderr
    two = _train(env, *common, "--out", str(tmp_path / "two.pt"), "--nodes", "2")
    assert two.returncode == 0, two.stderr
    err = two.stderr
    # The same bags on both machines, each rank its half of the samples, the linear rule.
    reads = re.findall(
        r"\[train:local-\d:(\d)\] read 12 bags at 20 Hz: (\d+) train episodes \((\d+) samples\)", err
    )
    assert sorted(r[0] for r in reads) == ["0", "1"], err
    assert reads[0][1:] == reads[1][1:], reads
    samples = int(reads[0][2])
    shards = re.findall(
        r"\[train:local-\d:\d\] train: world 2: global batch 512 \(256 per rank\), peak lr 0\.004 "
        r"\(linear rule, warm-up 30% of steps\), (\d+) of (\d+) samples per epoch on this rank",
        err,
    )
    assert shards == [(str(-(-samples // 2)), str(samples))] * 2, err
    assert re.search(
        rf"\[train:local-0:0\] train: epoch {EPOCHS}/{EPOCHS} step \d+ loss \S+ \d+ samples/s world 2", err
    )
    assert "[train:local-1:1] train: done in" in err
    # The held-out loss after every epoch, which the run report's time to a target reads.
    heldout = re.findall(r"\[train:local-(\d):\d\] eval: epoch \d+/\d+ heldout_loss (\S+)", err)
    assert len(heldout) == EPOCHS, err
    assert {machine for machine, _ in heldout} == {"0"}, heldout
    assert all(float(loss) > 0 for _, loss in heldout), heldout
    solo, fleet = json.loads(one.stdout), json.loads(two.stdout)
    assert fleet["world_size"] == 2.0
    assert fleet["bytes_per_step"] > 0  # measured on the collectives
    # Both beat the mean action by far, and the fleet is within 2 % of the baseline's error of one machine.
    baseline = fleet["baseline_mean_action_mse"]
    assert solo["baseline_mean_action_mse"] == baseline
    assert fleet["heldout_mse"] < 0.1 * baseline, fleet
    assert abs(fleet["heldout_mse"] - solo["heldout_mse"]) <= 0.02 * baseline, (solo, fleet)
    # The run's report has the fleet's throughput from rank 0's epoch lines.
    report = re.search(r"^train: report (\S+report\.json) and ", err, re.MULTILINE)
    assert report, err
    figures = json.loads(Path(report.group(1)).read_text())["figures"]
    assert figures["samples_per_second"]["value"] > 0
    # Rank 0 alone wrote the policy; the lab's folder is as it was.
    assert sorted(p.name for p in tmp_path.glob("*.pt*")) == ["one.pt", "two.pt"]
    assert snapshot(bags) == before
    assert training_processes(env["FOGROS_DIST_HOME"]) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--record-demo", "{tmp}/demo"],
            r"--record-demo \S+/demo: a fleet records on every machine, into folders of its own; record once "
            r"without --nodes/--on, then train the fleet with --bag-dir on it",
        ),
        (
            ["--bag-dir", "{tmp}/nowhere"],
            r"--bag-dir \S+/nowhere is not a folder on machine 'local-\d': every machine of the fleet "
            r"reads the bags at that path; copy them there, or train without --nodes/--on",
        ),
    ],
)
def test_bad_data_options_on_a_fleet_are_one_line_and_nothing_is_left(
    env: dict[str, str], tmp_path: Path, args: list[str], expected: str
) -> None:
    done = _train(env, *(a.format(tmp=tmp_path) for a in args), "--nodes", "2")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"fogros-dist: error: training failed: machine local-\d, rank \d, exit code 1: .*{expected}", last
    ), last
    assert not (tmp_path / "demo").exists()
    assert training_processes(env["FOGROS_DIST_HOME"]) == []


def test_two_local_machines_train_a_labs_bags_with_local_sgd(env: dict[str, str], tmp_path: Path) -> None:
    """The policy's loop hands its steps to local SGD's averaging as the grasp loop does."""
    bags = tmp_path / "lab_bags"
    write_lab_bags(bags, count=12)
    out = str(tmp_path / "local.pt")
    done = _train(env, "--bag-dir", str(bags), *LAB_MAPPING, "--epochs", str(EPOCHS), "--json",
                  "--out", out, "--nodes", "2", "--comm-hook", "localsgd:4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"\[train:local-0:0\] train: world 2: .* gradients by local SGD: parameters averaged every 4 steps "
        r"and at each epoch's end, after 10 steps of all-reduce",
        done.stderr,
    ), done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["comm_hook"] == "localsgd:4"
    assert metrics["heldout_mse"] < 0.1 * metrics["baseline_mean_action_mse"], metrics
    # Nothing on most steps, the parameters on some: far below a gradient's bytes every step.
    assert 0 < metrics["bytes_per_step"] < metrics["bytes_last_step"], metrics
    assert training_processes(env["FOGROS_DIST_HOME"]) == []
