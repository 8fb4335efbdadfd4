"""A training run's report: JSON with every figure and where it came from, and a PNG.

Figures: samples/s, step time split into compute and communication, scaling efficiency against a
baseline (``samples/s(N) / (N / n0 x samples/s(n0))``, n0 = 1 for one machine), bytes per step,
time to a target metric, the final held-out metrics, and the run's cost, energy and CO2e
(:mod:`fogros_dist.train.footprint`). Inputs are the epoch lines rank 0 printed
(:func:`parse_progress`), rank 0's final metrics, the machines' footprints and, optionally, a
baseline and a target. A figure whose input is missing is reported as ``{"value": null, "why":
...}``: never as 0, never estimated from something else.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from fogros_dist.errors import ConfigError
from fogros_dist.train.footprint import MachineFootprint, check_utilisation, run_cost_and_co2e

__all__ = ["EpochRecord", "RunReport", "TargetMetric", "parse_progress"]

# The grasp loop's epoch line (workloads/grasp/train.py, train_model), as the fleet worker prefixes
# it: "[train:<machine>:<rank>] train: epoch 3/8 step 36 loss 0.512 1843 samples/s world 2 (0.8 s)".
# A single-process run prints it without the prefix.
_EPOCH_LINE = re.compile(
    r"^(?:\[train:(?P<machine>[^\]:\s]+):(?P<rank>\d+)\]\s+)?"
    r"train: epoch (?P<epoch>\d+)/(?P<epochs>\d+) step (?P<step>\d+) loss (?P<loss>\S+) "
    r"(?P<sps>\S+) samples/s world (?P<world>\d+)"
    r"(?: \((?P<seconds>\S+) s\))?\s*$"
)
# epoch_loop.heldout_line's: the held-out metrics measured after an epoch, as name/value pairs.
_HELDOUT_LINE = re.compile(
    r"^(?:\[train:(?P<machine>[^\]:\s]+):(?P<rank>\d+)\]\s+)?"
    r"eval: epoch (?P<epoch>\d+)/(?P<epochs>\d+)(?P<pairs>(?: \S+ \S+)+)\s*$"
)
_FINAL = "rank 0's final metrics"
# What the comm meter (train/comm_meter.py) reports; it gives zeros when it measured no step, which
# are no measurement: with measured_steps 0 these are unknown.
_COMM_KEYS = frozenset(
    {"bytes_per_step", "written_bytes_per_step", "comm_seconds_per_step", "compute_seconds_per_step"}
)


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One epoch as rank 0 reported it.

    Attributes:
        epoch: the epoch's number, from 1.
        step: this rank's optimizer steps so far.
        loss: the epoch's mean training loss over every rank.
        samples_per_second: the epoch's samples over every rank / its wall time.
        world_size: ranks in the epoch.
        seconds: training seconds since the first epoch began (the epoch durations summed, so
            data generation and evaluation are not in it); None when a line lacked its duration.
        duration: the epoch's own wall time, None when its line lacked it.
        epochs: the run's planned epochs, when the line said.
        heldout: held-out metrics measured at this epoch, by name (``heldout_accuracy``).
    """

    epoch: int
    step: int
    loss: float
    samples_per_second: float
    world_size: int
    seconds: float | None
    duration: float | None = None
    epochs: int | None = None
    heldout: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (non-finite numbers as null)."""
        data: dict[str, Any] = _finite(
            {
                "epoch": self.epoch,
                "epochs": self.epochs,
                "step": self.step,
                "loss": self.loss,
                "samples_per_second": self.samples_per_second,
                "world_size": self.world_size,
                "seconds": self.seconds,
                "duration": self.duration,
                "heldout": dict(self.heldout),
            }
        )
        return data


@dataclass(frozen=True, kw_only=True)
class TargetMetric:
    """A value a metric should reach: ``loss`` (the epoch lines') or a held-out metric's name.

    ``goal`` is ``at_least`` or ``at_most``; by default ``at_most`` for names with ``loss`` or
    ``error`` in them, else ``at_least``.
    """

    name: str
    value: float
    goal: Literal["at_least", "at_most"] | None = None

    @property
    def resolved_goal(self) -> Literal["at_least", "at_most"]:
        """The goal, inferred from the name when not given."""
        if self.goal is not None:
            return self.goal
        lowered = self.name.lower()
        return "at_most" if "loss" in lowered or "error" in lowered else "at_least"

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        if not math.isfinite(value):
            return False
        return value >= self.value if self.resolved_goal == "at_least" else value <= self.value

    @classmethod
    def parse(cls, text: str) -> TargetMetric:
        """``heldout_accuracy=0.85`` (or ``loss=0.3``: the goal follows the name), as `fogros-dist
        train --target` takes it.

        Raises:
            ConfigError: not NAME=VALUE with a finite number.
        """
        name, _, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or not math.isfinite(number):
            msg = (
                f"--target {text!r}: expected METRIC=VALUE with a finite number, e.g. heldout_accuracy=0.85 "
                "or loss=0.3"
            )
            raise ConfigError(msg)
        return cls(name=name, value=number)

    def describe(self) -> str:
        """``heldout_accuracy >= 0.9``."""
        return f"{self.name} {'>=' if self.resolved_goal == 'at_least' else '<='} {self.value:g}"


def parse_progress(lines: Iterable[str]) -> list[EpochRecord]:
    """The epoch records in a run's output: rank 0's epoch lines (or unprefixed ones, from a
    single-process run), each with the held-out metrics of the ``eval:`` line that follows it,
    every other line ignored.

    After a restart, torchrun's workers resume from the last checkpoint and may repeat an epoch:
    the last report of each epoch is kept, while ``seconds`` counts every epoch's duration in the
    order printed (the time was spent either way).
    """
    by_epoch: dict[int, EpochRecord] = {}
    elapsed: float | None = 0.0
    for raw in lines:
        heldout = _heldout(raw.strip())
        if heldout is not None:
            epoch, metrics = heldout
            if epoch in by_epoch:
                by_epoch[epoch] = replace(by_epoch[epoch], heldout=metrics)
            continue
        match = _EPOCH_LINE.match(raw.strip())
        if match is None or (match["rank"] is not None and int(match["rank"]) != 0):
            continue
        try:
            loss, sps = float(match["loss"]), float(match["sps"])
            duration = None if match["seconds"] is None else float(match["seconds"])
        except ValueError:  # a line that only looks like an epoch line
            continue
        elapsed = None if elapsed is None or duration is None else elapsed + duration
        epoch = int(match["epoch"])
        by_epoch[epoch] = EpochRecord(
            epoch=epoch,
            epochs=int(match["epochs"]),
            step=int(match["step"]),
            loss=loss,
            samples_per_second=sps,
            world_size=int(match["world"]),
            seconds=elapsed,
            duration=duration,
        )
    return [by_epoch[e] for e in sorted(by_epoch)]


def _heldout(line: str) -> tuple[int, dict[str, float]] | None:
    """An ``eval:`` line of rank 0 as (epoch, metrics); None for any other line."""
    match = _HELDOUT_LINE.match(line)
    if match is None or (match["rank"] is not None and int(match["rank"]) != 0):
        return None
    words = match["pairs"].split()
    try:
        metrics = {name: float(value) for name, value in zip(words[::2], words[1::2], strict=True)}
    except ValueError:  # a line that only looks like an eval line
        return None
    return int(match["epoch"]), metrics


def _known(value: float | int, unit: str, source: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "source": source}


def _unknown(unit: str, why: str) -> dict[str, Any]:
    return {"value": None, "unit": unit, "why": why}


def _finite(data: Any) -> Any:
    """``data`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {str(k): _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """Everything known about one training run, and how to write it down.

    Attributes:
        epochs: rank 0's epoch records (:func:`parse_progress`).
        final_metrics: rank 0's final metrics (``FleetRun.metrics``); missing keys are unknown.
        machines: the run's machines (:mod:`fogros_dist.train.footprint`).
        seconds: the run's wall time for cost and CO2e (``FleetRun.seconds``); default: the epoch
            lines' training time, stated as such.
        baseline_samples_per_second: samples/s of the baseline run, for scaling efficiency.
        baseline_world_size: the baseline's ranks (1: one machine, one rank).
        baseline_source: where the baseline comes from (a run, a benchmark file).
        target: the metric and value for time-to-target.
        utilisation: the processors' mean busy fraction for energy (default 1.0, stated).
        title: the PNG's title.
    """

    epochs: Sequence[EpochRecord] = ()
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    machines: Sequence[MachineFootprint] = ()
    seconds: float | None = None
    baseline_samples_per_second: float | None = None
    baseline_world_size: int = 1
    baseline_source: str = "given for this run"
    target: TargetMetric | None = None
    utilisation: float | None = None
    title: str = "training run"

    def __post_init__(self) -> None:
        base = self.baseline_samples_per_second
        if base is not None and (not math.isfinite(base) or base <= 0):
            msg = (
                f"baseline samples/s {base!r} is not a positive number: give one machine's measured samples/s"
            )
            raise ConfigError(msg)
        if self.baseline_world_size < 1:
            msg = (
                f"baseline world size {self.baseline_world_size} is below 1: "
                "give the baseline run's ranks, e.g. 1"
            )
            raise ConfigError(msg)
        if self.seconds is not None and (not math.isfinite(self.seconds) or self.seconds < 0):
            msg = f"run seconds {self.seconds!r} is not a finite number >= 0: give the run's wall time"
            raise ConfigError(msg)
        check_utilisation(self.utilisation)

    def _final(self, key: str) -> float | None:
        value = self.final_metrics.get(key)
        if value is None or not math.isfinite(float(value)):
            return None
        return float(value)

    def _final_figure(self, key: str, unit: str) -> dict[str, Any]:
        if key in _COMM_KEYS and key in self.final_metrics and self._final("measured_steps") == 0:
            return _unknown(unit, f"{_FINAL} say measured_steps 0: their {key} is no measurement")
        value = self._final(key)
        if value is not None:
            return _known(value, unit, f"{_FINAL} ({key})")
        if key in self.final_metrics:
            return _unknown(unit, f"{_FINAL} give {key} as {self.final_metrics[key]!r}, not a number")
        return _unknown(unit, f"{_FINAL} have no {key!r}")

    def samples_per_second(self) -> dict[str, Any]:
        """The run's samples/s: rank 0's final figure, else the epoch lines' time-weighted mean."""
        if self._final("samples_per_second") is not None or not self.epochs:
            figure = self._final_figure("samples_per_second", "samples/s")
            if not self.epochs and figure["value"] is None:
                figure["why"] += " and there are no epoch lines"
            return figure
        # An elastic run changes world size: only the epochs at the last one describe it.
        world = self.epochs[-1].world_size
        records = [r for r in self.epochs if r.world_size == world]
        which = f"rank 0's {len(records)} epoch lines"
        if len(records) < len(self.epochs):
            which += f" at world size {world} (of {len(self.epochs)})"
        weights = [r.duration for r in records]
        if all(w is not None and w > 0 for w in weights):
            seconds = [float(w) for w in weights if w is not None]
            total = sum(r.samples_per_second * w for r, w in zip(records, seconds, strict=True))
            return _known(total / sum(seconds), "samples/s", f"time-weighted mean of {which}' samples/s")
        mean = sum(r.samples_per_second for r in records) / len(records)
        return _known(mean, "samples/s", f"mean of {which}' samples/s (some lack their duration)")

    def world_size(self) -> dict[str, Any]:
        """Ranks in the run: rank 0's final figure, else the last epoch line's."""
        if self._final("world_size") is not None or not self.epochs:
            return self._final_figure("world_size", "ranks")
        last = self.epochs[-1]
        return _known(last.world_size, "ranks", f"rank 0's last epoch line (epoch {last.epoch})")

    def _step_figures(self) -> dict[str, Any]:
        compute = self._final_figure("compute_seconds_per_step", "s")
        comm = self._final_figure("comm_seconds_per_step", "s")
        figures = {"compute_seconds_per_step": compute, "comm_seconds_per_step": comm}
        if compute["value"] is None or comm["value"] is None:
            missing = " and ".join(k for k, f in figures.items() if f["value"] is None)
            figures["step_seconds"] = _unknown("s", f"needs {missing}")
            figures["comm_fraction"] = _unknown("fraction", f"needs {missing}")
            return figures
        step = compute["value"] + comm["value"]
        figures["step_seconds"] = _known(step, "s", "compute_seconds_per_step + comm_seconds_per_step")
        if step > 0:
            figures["comm_fraction"] = _known(
                comm["value"] / step, "fraction", "comm_seconds_per_step / step_seconds"
            )
        else:
            figures["comm_fraction"] = _unknown("fraction", "step time is 0")
        return figures

    def scaling_efficiency(self) -> dict[str, Any]:
        """``samples/s(N) / (N / n0 x samples/s(n0))``: 1.0 is linear scaling from the baseline."""
        sps, world = self.samples_per_second(), self.world_size()
        base, n0 = self.baseline_samples_per_second, self.baseline_world_size
        missing = [why for why in (sps.get("why"), world.get("why")) if why]
        if base is None:
            missing.append("no baseline samples/s given")
        if missing:
            return _unknown("fraction", "; ".join(missing))
        assert base is not None
        ideal = world["value"] / n0 * base
        value = sps["value"] / ideal
        return _known(
            value,
            "fraction",
            "samples/s(N) / (N / n0 x samples/s(n0)) = "
            f"{sps['value']:.6g} / ({world['value']:g} / {n0} x {base:.6g}); "
            f"baseline: {self.baseline_source}",
        )

    def time_to_target(self) -> dict[str, Any]:
        """Seconds until the first epoch record that meets the target, with that epoch."""
        target = self.target
        if target is None:
            return _unknown("s", "no target metric given")
        about = {"target": {"name": target.name, "value": target.value, "goal": target.resolved_goal}}
        best: float | None = None
        for record in self.epochs:
            value = record.loss if target.name == "loss" else record.heldout.get(target.name)
            if value is None:
                continue
            if target.reached(value):
                if record.seconds is None:
                    return {
                        **_unknown("s", f"reached at epoch {record.epoch}, whose time the lines do not give"),
                        **about,
                        "epoch": record.epoch,
                    }
                return {
                    **_known(
                        record.seconds, "s", f"first epoch record with {target.describe()} (training time)"
                    ),
                    **about,
                    "epoch": record.epoch,
                    "metric_value": value,
                }
            pick = max if target.resolved_goal == "at_least" else min
            best = value if best is None else pick(best, value)
        final = self._final(target.name)
        if best is None and final is not None and target.reached(final):
            why = (
                f"reached only by the final evaluation ({target.name} {final:g}); no epoch record carries "
                f"{target.name}, so when it was reached is unknown"
            )
            return {**_unknown("s", why), **about, "reached_by_end": True}
        if best is None:
            return {
                **_unknown("s", f"no epoch record carries {target.name}"),
                **about,
                "reached_by_end": False,
            }
        return {
            **_unknown("s", f"not reached: the best epoch value was {best:g}"),
            **about,
            "reached_by_end": False,
        }

    def heldout(self) -> dict[str, Any]:
        """Every ``heldout_*`` metric of rank 0's final metrics."""
        found = {
            key: self._final_figure(key, "")
            for key in sorted(self.final_metrics)
            if key.startswith("heldout_")
        }
        return found or {"heldout": _unknown("", f"{_FINAL} have no heldout_* metric")}

    def wall_seconds(self) -> dict[str, Any]:
        """The seconds the cost and CO2e are for."""
        if self.seconds is not None:
            return _known(self.seconds, "s", "the run's wall time, as given")
        if self.epochs and self.epochs[-1].seconds is not None:
            return _known(
                self.epochs[-1].seconds,
                "s",
                "the epoch lines' durations summed: training only, without data generation, start-up "
                "and evaluation (pass the run's wall time for its whole cost)",
            )
        return _unknown("s", "no run wall time given and the epoch lines give no durations")

    def footprint(self) -> dict[str, Any]:
        """:func:`run_cost_and_co2e` for the machines over :meth:`wall_seconds`."""
        seconds = self.wall_seconds()
        if seconds["value"] is None:
            return {"total": {"kwh": None, "kg_co2e": None, "usd": None}, "unknown": [seconds["why"]]}
        return run_cost_and_co2e(self.machines, float(seconds["value"]), self.utilisation)

    def figures(self) -> dict[str, Any]:
        """Every figure, each ``{"value", "unit", "source"}`` or ``{"value": None, "unit", "why"}``."""
        return {
            "samples_per_second": self.samples_per_second(),
            "world_size": self.world_size(),
            **self._step_figures(),
            "scaling_efficiency": self.scaling_efficiency(),
            # The payload handed to the collectives; the written bytes include gloo's framing.
            "bytes_per_step": self._final_figure("bytes_per_step", "bytes"),
            "written_bytes_per_step": self._final_figure("written_bytes_per_step", "bytes"),
            "time_to_target": self.time_to_target(),
            "heldout": self.heldout(),
            "wall_seconds": self.wall_seconds(),
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data (non-finite numbers as null)."""
        baseline = None
        if self.baseline_samples_per_second is not None:
            baseline = {
                "samples_per_second": self.baseline_samples_per_second,
                "world_size": self.baseline_world_size,
                "source": self.baseline_source,
            }
        data = {
            "title": self.title,
            "figures": self.figures(),
            "footprint": self.footprint(),
            "epochs": [r.to_dict() for r in self.epochs],
            "final_metrics": dict(self.final_metrics),
            "baseline": baseline,
        }
        result: dict[str, Any] = _finite(data)
        return result

    def write(self, json_path: Path, png_path: Path) -> None:
        """Write the JSON report and its PNG (loss and held-out metric over time, samples/s per
        epoch, the key figures with cost and CO2e)."""
        data = self.to_dict()
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        png_path.parent.mkdir(parents=True, exist_ok=True)
        _plot(self, data, png_path)


def _show(figure: Mapping[str, Any], fmt: str = "{:.4g}", suffix: str = "") -> str:
    value = figure.get("value")
    return "unknown" if value is None else fmt.format(value) + suffix


def _summary_lines(data: Mapping[str, Any]) -> list[str]:
    fig = data["figures"]
    foot = data["footprint"]
    total = foot["total"]
    lines = [
        f"samples/s {_show(fig['samples_per_second'])}   world {_show(fig['world_size'], '{:g}')}   "
        f"scaling efficiency {_show(fig['scaling_efficiency'], '{:.1%}')}",
        f"step: compute {_show(fig['compute_seconds_per_step'], '{:.4g}', ' s')} + "
        f"comm {_show(fig['comm_seconds_per_step'], '{:.4g}', ' s')} "
        f"(comm {_show(fig['comm_fraction'], '{:.0%}')})   "
        f"bytes/step {_show(fig['bytes_per_step'], '{:.4g}')}",
    ]
    target = fig["time_to_target"]
    if "target" in target:
        goal = ">=" if target["target"]["goal"] == "at_least" else "<="
        lines.append(
            f"time to {target['target']['name']} {goal} {target['target']['value']:g}: "
            f"{_show(target, '{:.1f}', ' s')}"
        )
    lines.append(
        "held-out: " + ", ".join(f"{k} {_show(v)}" for k, v in fig["heldout"].items() if k != "heldout")
        if "heldout" not in fig["heldout"]
        else "held-out: unknown"
    )
    usd = "unknown" if total["usd"] is None else f"${total['usd']:.4f}"
    kwh = "unknown" if total["kwh"] is None else f"{total['kwh']:.4g} kWh"
    co2 = "CO2e unknown" if total["kg_co2e"] is None else f"{total['kg_co2e'] * 1000:.4g} gCO2e"
    hours = foot.get("seconds")
    over = "" if hours is None else f" over {hours:.0f} s"
    lines.append(f"cost {usd}   energy {kwh}   {co2}{over}")
    if "utilisation" in foot:
        lines.append(f"utilisation {foot['utilisation']['value']:g}: {foot['utilisation']['source']}")
    lines.extend(f"! {line}" for line in foot["unknown"][:3])
    return lines


def _plot(report: RunReport, data: Mapping[str, Any], png_path: Path) -> None:
    """The report's PNG, drawn with matplotlib's Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lines = [part for line in _summary_lines(data) for part in textwrap.wrap(line, 120) or [""]]
    # Constrained layout keeps the twin axis's label clear of the next plot.
    text_inches = 0.19 * len(lines) + 0.3
    figure = Figure(figsize=(11.0, 4.2 + text_inches), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, height_ratios=[4.0, text_inches])
    figure.suptitle(report.title)
    records = list(report.epochs)
    timed = bool(records) and all(r.seconds is not None for r in records)
    xs = [float(r.seconds) if timed and r.seconds is not None else float(r.epoch) for r in records]
    x_label = "training time [s]" if timed else "epoch"

    loss_axes = figure.add_subplot(grid[0, 0])
    loss_axes.set_title("loss and held-out metric")
    loss_axes.set_xlabel(x_label)
    loss_axes.set_ylabel("training loss")
    if records:
        loss_axes.plot(xs, [r.loss for r in records], "o-", color="tab:blue", label="loss")
    else:
        loss_axes.text(0.5, 0.5, "no epoch lines", ha="center", va="center", transform=loss_axes.transAxes)
    heldout_axes = loss_axes.twinx()
    heldout_axes.set_ylabel("held-out metric")
    names = sorted({name for r in records for name in r.heldout})
    colours = ["tab:orange", "tab:red", "tab:purple", "tab:brown"]
    for index, name in enumerate(names):
        points = [(x, r.heldout[name]) for x, r in zip(xs, records, strict=True) if name in r.heldout]
        colour = colours[index % len(colours)]
        heldout_axes.plot([p[0] for p in points], [p[1] for p in points], "s--", color=colour, label=name)
    end = xs[-1] if xs else 0.0
    for key, value in sorted(report.final_metrics.items()):
        if key.startswith("heldout_") and key not in names and math.isfinite(float(value)):
            if key in ("heldout_samples",):
                continue  # a count, not a metric
            heldout_axes.plot(
                [end], [float(value)], "*", markersize=12, color="tab:orange", label=f"final {key}"
            )
    handles = loss_axes.get_legend_handles_labels()
    twin = heldout_axes.get_legend_handles_labels()
    if handles[0] or twin[0]:
        loss_axes.legend(handles[0] + twin[0], handles[1] + twin[1], loc="best", fontsize="small")

    rate_axes = figure.add_subplot(grid[0, 1])
    rate_axes.set_title("samples/s per epoch")
    rate_axes.set_xlabel("epoch")
    rate_axes.set_ylabel("samples/s (all ranks)")
    if records:
        bars = rate_axes.bar(
            [r.epoch for r in records], [r.samples_per_second for r in records], color="tab:green"
        )
        rate_axes.bar_label(bars, labels=[f"world {r.world_size}" for r in records], fontsize="x-small")
        rate_axes.xaxis.set_major_locator(MaxNLocator(integer=True))

    text_axes = figure.add_subplot(grid[1, :])
    text_axes.axis("off")
    text_axes.text(
        0.0,
        1.0,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize="small",
        transform=text_axes.transAxes,
        bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.7"},
    )
    figure.savefig(png_path, format="png")
