"""A training run's report: rank 0's epoch lines parsed (others ignored), the figures computed from
what is known and reported absent otherwise (never 0), the JSON round-tripping and a real PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.train.footprint import footprint_of
from fogros_dist.train.run_report import EpochRecord, RunReport, TargetMetric, parse_progress

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# As the Local fleet echoes a 2-rank run: the worker's [train:<machine>:<rank>] prefix, the agents'
# own [train:<machine>] lines, other ranks' lines and noise.
FLEET_OUTPUT = """\
train: grasp on 2 Local machine(s), 1 rank(s) each; logs under /tmp/x
[train:local-0] INFO:torch.distributed.elastic.agent.server.api:[default] Starting worker group
[train:local-0:0] data: generating 24 training and 8 held-out scenes
[train:local-1:1] train: on cpu, rank 1 of 2 (gloo)
[train:local-0:0] train: epoch 1/3 step 12 loss 0.693 1500 samples/s world 2 (1.0 s)
[train:local-1:1] train: epoch 1/3 step 12 loss 0.693 1500 samples/s world 2 (1.0 s)
[train:local-0:0] train: epoch 2/3 step 24 loss 0.512 1800 samples/s world 2 (0.8 s)
[train:local-0:0] train: epoch 2/3 step 24 loss oops samples/s world 2 (0.8 s)
train: epoch 3 of 3, nearly done
[train:local-0:0] train: epoch 3/3 step 36 loss 0.401 1900 samples/s world 2 (0.7 s)
[train:local-1:1] train: done in 2.6 s (rank 0 evaluates and saves)
[train:local-0:0] eval: held-out accuracy 0.912, precision 0.900, recall 0.880 (80 grasps, 40% robust)
metrics {"heldout_accuracy": 0.912}
"""


def test_parse_progress_keeps_rank_0_epoch_lines_only() -> None:
    records = parse_progress(FLEET_OUTPUT.splitlines())
    assert [r.epoch for r in records] == [1, 2, 3]
    assert [r.loss for r in records] == [0.693, 0.512, 0.401]
    assert [r.samples_per_second for r in records] == [1500.0, 1800.0, 1900.0]
    assert [r.step for r in records] == [12, 24, 36]
    assert {r.world_size for r in records} == {2}
    assert {r.epochs for r in records} == {3}
    assert [r.duration for r in records] == [1.0, 0.8, 0.7]
    # Seconds since the first epoch began: the durations summed (rank 1's line is not counted).
    assert [r.seconds for r in records] == pytest.approx([1.0, 1.8, 2.5])


def test_parse_progress_of_a_single_process_run_and_a_restart() -> None:
    lines = [
        "train: epoch 1/3 step 10 loss 0.700 900 samples/s world 1 (2.0 s)",
        "train: epoch 2/3 step 20 loss 0.600 950 samples/s world 1 (2.0 s)",
        # The workers restarted before epoch 2's checkpoint: epoch 2 runs again, on 2 ranks.
        "[train:local-0:0] train: resumed after epoch 1/3 from the run's checkpoint",
        "[train:local-0:0] train: epoch 2/3 step 15 loss 0.580 1700 samples/s world 2 (1.0 s)",
        "[train:local-1:0] train: epoch 3/3 step 30 loss 0.500 1750 samples/s world 2 (1.0 s)",
    ]
    records = parse_progress(lines)
    assert [r.epoch for r in records] == [1, 2, 3]
    assert records[1].world_size == 2  # the last report of epoch 2 is kept
    assert records[1].loss == 0.58
    assert [r.seconds for r in records] == pytest.approx([2.0, 5.0, 6.0])


def test_parse_progress_without_durations_leaves_time_unknown() -> None:
    records = parse_progress(["train: epoch 1/2 step 5 loss 0.7 100 samples/s world 1"])
    assert records[0].seconds is None
    assert records[0].duration is None


def test_parse_progress_reads_the_grasp_loops_real_lines() -> None:
    torch = pytest.importorskip("torch")
    from fogros_dist.workloads.grasp.dataset import DatasetConfig, GraspDataset, generate_samples
    from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig
    from fogros_dist.workloads.grasp.sampling import PatchSpec
    from fogros_dist.workloads.grasp.train import TrainConfig, train_model

    torch.set_num_threads(1)
    patch = PatchSpec(size=24)
    samples = generate_samples(DatasetConfig(scenes=4, grasps_per_scene=8, seed=0, patch=patch))
    torch.manual_seed(0)
    model = GQCNN(ModelConfig(patch=patch))
    printed: list[str] = []
    evaluated: list[bool] = []

    def evaluate(network: Any) -> dict[str, float]:
        evaluated.append(network is model)  # the bare network, never a wrapper
        return {"heldout_accuracy": 0.5 + 0.1 * len(evaluated)}

    losses = train_model(
        model,
        GraspDataset(samples, seed=0),
        config=TrainConfig(epochs=3, batch_size=32),
        report=lambda line: printed.append(f"[train:local-0:0] {line}"),  # as the fleet worker prints
        evaluate=evaluate,
        eval_every=2,  # after epoch 2, and after the last
    )
    records = parse_progress([*printed, "[train:local-1:1] " + printed[0].split("] ", 1)[1]])
    assert [r.epoch for r in records] == [1, 2, 3]
    assert [r.loss for r in records] == pytest.approx(losses, abs=5e-4)  # printed with 3 decimals
    assert all(r.samples_per_second > 0 and r.world_size == 1 for r in records)
    assert all(r.seconds is not None for r in records)
    assert evaluated == [True, True]
    assert [dict(r.heldout) for r in records] == [{}, {"heldout_accuracy": 0.6}, {"heldout_accuracy": 0.7}]


def test_eval_lines_give_each_epoch_its_held_out_metrics_and_the_time_to_target() -> None:
    lines = [
        "[train:local-0:0] train: epoch 1/3 step 12 loss 0.693 1500 samples/s world 2 (1.00 s)",
        "[train:local-0:0] eval: epoch 1/3 heldout_accuracy 0.71 heldout_recall 0.5",
        "[train:local-1:1] eval: epoch 1/3 heldout_accuracy 0.99",  # not rank 0's
        "[train:local-0:0] train: epoch 2/3 step 24 loss 0.512 1800 samples/s world 2 (0.80 s)",
        "[train:local-0:0] eval: epoch 2/3 heldout_accuracy oops",  # only looks like one
        "[train:local-0:0] train: epoch 3/3 step 36 loss 0.401 1900 samples/s world 2 (0.70 s)",
        "[train:local-0:0] eval: epoch 3/3 heldout_accuracy 0.86 heldout_recall 0.8",
        "[train:local-0:0] eval: held-out accuracy 0.860, precision 0.900, recall 0.800",
    ]
    records = parse_progress(lines)
    assert [dict(r.heldout) for r in records] == [
        {"heldout_accuracy": 0.71, "heldout_recall": 0.5},
        {},
        {"heldout_accuracy": 0.86, "heldout_recall": 0.8},
    ]
    report = RunReport(epochs=records, final_metrics={}, target=TargetMetric.parse("heldout_accuracy=0.8"))
    reached = report.time_to_target()
    assert (reached["value"], reached["epoch"], reached["metric_value"]) == (pytest.approx(2.5), 3, 0.86)
    early = RunReport(epochs=records, final_metrics={}, target=TargetMetric.parse("heldout_accuracy=0.7"))
    assert early.time_to_target()["epoch"] == 1
    missed = RunReport(epochs=records, final_metrics={}, target=TargetMetric.parse("heldout_accuracy=0.9"))
    assert missed.time_to_target()["why"] == "not reached: the best epoch value was 0.86"


@pytest.mark.parametrize("text", ["heldout_accuracy", "=0.8", "heldout_accuracy=nan", "acc=x", "held out=1"])
def test_a_bad_target_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TargetMetric.parse(text)
    assert str(caught.value).startswith(f"--target {text!r}: expected METRIC=VALUE"), caught.value


def test_a_loss_target_aims_down() -> None:
    target = TargetMetric.parse("loss=0.3")
    assert (target.name, target.value, target.resolved_goal) == ("loss", 0.3, "at_most")


def _records(heldout: list[float] | None = None) -> list[EpochRecord]:
    records = parse_progress(FLEET_OUTPUT.splitlines())
    if heldout is None:
        return records
    return [
        EpochRecord(
            epoch=r.epoch,
            step=r.step,
            loss=r.loss,
            samples_per_second=r.samples_per_second,
            world_size=r.world_size,
            seconds=r.seconds,
            duration=r.duration,
            heldout={"heldout_accuracy": value},
        )
        for r, value in zip(records, heldout, strict=True)
    ]


def test_scaling_efficiency_against_one_machine() -> None:
    report = RunReport(
        epochs=_records(),
        final_metrics={"samples_per_second": 1800.0, "world_size": 2.0},
        baseline_samples_per_second=1000.0,
        baseline_source="bench run of 2026-12-01",
    )
    figures = report.figures()
    assert figures["samples_per_second"]["value"] == 1800.0
    assert figures["scaling_efficiency"]["value"] == pytest.approx(1800.0 / (2 * 1000.0))  # 0.9
    assert "bench run of 2026-12-01" in figures["scaling_efficiency"]["source"]
    # From a 2-rank baseline to 4 ranks: 2700 / (4 / 2 x 1500) = 0.9.
    wider = RunReport(
        final_metrics={"samples_per_second": 2700.0, "world_size": 4.0},
        baseline_samples_per_second=1500.0,
        baseline_world_size=2,
    )
    assert wider.scaling_efficiency()["value"] == pytest.approx(0.9)


def test_samples_per_second_from_the_epoch_lines_is_time_weighted() -> None:
    figure = RunReport(epochs=_records()).samples_per_second()
    # (1500 x 1.0 + 1800 x 0.8 + 1900 x 0.7) / 2.5 = 1708 samples/s.
    assert figure["value"] == pytest.approx(1708.0)
    assert "epoch lines" in figure["source"]


def test_samples_per_second_of_an_elastic_run_uses_its_last_world_size() -> None:
    lines = [
        "train: epoch 1/3 step 10 loss 0.7 900 samples/s world 1 (2.0 s)",
        "train: epoch 2/3 step 15 loss 0.6 1700 samples/s world 2 (1.0 s)",
        "train: epoch 3/3 step 30 loss 0.5 1900 samples/s world 2 (1.0 s)",
    ]
    figure = RunReport(epochs=parse_progress(lines)).samples_per_second()
    assert figure["value"] == pytest.approx(1800.0)
    assert "world size 2 (of 3)" in figure["source"]


def test_step_split_and_bytes_come_from_rank_0s_metrics() -> None:
    report = RunReport(
        final_metrics={
            "measured_steps": 36.0,
            "compute_seconds_per_step": 0.030,
            "comm_seconds_per_step": 0.010,
            "bytes_per_step": 4.0e6,
        }
    )
    figures = report.figures()
    assert figures["step_seconds"]["value"] == pytest.approx(0.040)
    assert figures["comm_fraction"]["value"] == pytest.approx(0.25)
    assert figures["bytes_per_step"]["value"] == 4.0e6
    assert figures["written_bytes_per_step"]["value"] is None


def test_time_to_target_is_the_first_epoch_reaching_it() -> None:
    report = RunReport(
        epochs=_records(heldout=[0.80, 0.91, 0.95]),
        target=TargetMetric(name="heldout_accuracy", value=0.9),
    )
    figure = report.time_to_target()
    assert figure["value"] == pytest.approx(1.8)  # epoch 2 ends 1.0 + 0.8 s in
    assert figure["epoch"] == 2
    assert figure["target"] == {"name": "heldout_accuracy", "value": 0.9, "goal": "at_least"}
    loss = RunReport(epochs=_records(), target=TargetMetric(name="loss", value=0.45)).time_to_target()
    assert loss["value"] == pytest.approx(2.5)
    assert loss["epoch"] == 3
    assert loss["target"]["goal"] == "at_most"


def test_time_to_target_not_reached_or_only_at_the_end_is_unknown() -> None:
    missed = RunReport(epochs=_records(), target=TargetMetric(name="loss", value=0.1)).time_to_target()
    assert missed["value"] is None
    assert "not reached" in missed["why"]
    assert "0.401" in missed["why"]
    only_final = RunReport(
        epochs=_records(),
        final_metrics={"heldout_accuracy": 0.912},
        target=TargetMetric(name="heldout_accuracy", value=0.9),
    ).time_to_target()
    assert only_final["value"] is None
    assert only_final["reached_by_end"] is True
    assert "no target" in RunReport().time_to_target()["why"]


def test_missing_metrics_are_reported_absent_never_zero() -> None:
    report = RunReport()
    figures = report.figures()
    for name in (
        "samples_per_second",
        "world_size",
        "compute_seconds_per_step",
        "comm_seconds_per_step",
        "step_seconds",
        "comm_fraction",
        "scaling_efficiency",
        "bytes_per_step",
        "time_to_target",
        "wall_seconds",
    ):
        assert figures[name]["value"] is None, name
        assert figures[name]["why"], name
    assert figures["heldout"]["heldout"]["value"] is None
    assert report.footprint()["total"] == {"kwh": None, "kg_co2e": None, "usd": None}
    # A comm meter that measured no step reports zeros: they are no measurement.
    zeros = RunReport(
        final_metrics={"measured_steps": 0.0, "bytes_per_step": 0.0, "comm_seconds_per_step": 0.0}
    )
    assert zeros.figures()["bytes_per_step"]["value"] is None
    assert "measured_steps 0" in zeros.figures()["comm_seconds_per_step"]["why"]
    # A NaN is not a value either.
    nan = RunReport(final_metrics={"bytes_per_step": float("nan")})
    assert nan.figures()["bytes_per_step"]["value"] is None


def test_footprint_over_the_run_wall_time_or_the_training_time() -> None:
    machines = [footprint_of("gpu", "aws", instance_type="g4dn.xlarge", region="us-west-2")]
    given = RunReport(epochs=_records(), machines=machines, seconds=3600.0).footprint()
    assert given["total"]["kwh"] == pytest.approx(0.09576)
    assert given["total"]["usd"] == pytest.approx(0.526)
    report = RunReport(epochs=_records(), machines=machines)
    assert report.wall_seconds()["value"] == pytest.approx(2.5)
    assert "training only" in report.wall_seconds()["source"]
    assert report.footprint()["seconds"] == pytest.approx(2.5)


def _full_report() -> RunReport:
    return RunReport(
        epochs=_records(heldout=[0.80, 0.91, 0.95]),
        final_metrics={
            "world_size": 2.0,
            "heldout_accuracy": 0.95,
            "heldout_samples": 80.0,
            "final_loss": float("nan"),
            "measured_steps": 36.0,
            "compute_seconds_per_step": 0.03,
            "comm_seconds_per_step": 0.01,
            "bytes_per_step": 4.0e6,
        },
        machines=[footprint_of(f"local-{i}", "local") for i in range(2)],
        seconds=12.0,
        baseline_samples_per_second=1000.0,
        target=TargetMetric(name="heldout_accuracy", value=0.9),
        title="grasp on 2 Local machines",
    )


def test_json_round_trips_as_strict_json(tmp_path: Path) -> None:
    report = _full_report()
    json_path, png_path = tmp_path / "out" / "report.json", tmp_path / "out" / "report.png"
    report.write(json_path, png_path)

    def no_constants(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    loaded = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=no_constants)
    assert loaded == report.to_dict()
    assert loaded["final_metrics"]["final_loss"] is None  # NaN is written as null
    assert loaded["figures"]["time_to_target"]["value"] == pytest.approx(1.8)
    assert loaded["footprint"]["total"]["kwh"] == pytest.approx(2 * 12.0 / 3600 * 3.5 / 1000)
    assert [e["epoch"] for e in loaded["epochs"]] == [1, 2, 3]
    for machine in loaded["footprint"]["machines"]:
        for factor in ("price_usd_per_hour", "watts", "pue", "grid_g_co2e_per_kwh"):
            assert machine[factor]["source"], factor
            assert machine[factor]["as_of"], factor


def test_png_is_a_real_picture(tmp_path: Path) -> None:
    from matplotlib.image import imread

    for report, name in ((_full_report(), "full"), (RunReport(), "empty")):
        png_path = tmp_path / f"{name}.png"
        report.write(tmp_path / f"{name}.json", png_path)
        data = png_path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 20_000, name  # axes, curves and text, not a blank canvas
        pixels = imread(png_path)
        assert pixels.shape[0] >= 500, name
        assert pixels.shape[1] >= 1000, name
        assert pixels.std() > 0.05, name  # not one flat colour


def test_bad_baseline_or_seconds_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"baseline samples/s 0\.0"):
        RunReport(baseline_samples_per_second=0.0)
    with pytest.raises(ConfigError, match="baseline world size 0"):
        RunReport(baseline_samples_per_second=10.0, baseline_world_size=0)
    with pytest.raises(ConfigError, match=r"run seconds -3\.0"):
        RunReport(seconds=-3.0)
    with pytest.raises(ConfigError, match=r"utilisation 2\.0"):
        RunReport(utilisation=2.0)
