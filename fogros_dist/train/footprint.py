"""What a training run cost, in dollars, energy and CO2e, from its machines and how long it ran.

The method is Patterson et al. 2021 ("Carbon Emissions and Large Neural Network Training",
arXiv:2104.10350)::

    kWh    = hours x (watts x utilisation) x PUE / 1000
    kgCO2e = kWh x grid gCO2e/kWh / 1000
    USD    = billed hours x price per hour

Each machine is a :class:`MachineFootprint`: its price, power, data-centre PUE and grid intensity,
each a :class:`Factor` that says where it came from and which year it describes. The factors live
in ``footprint_factors.json`` next to this module (grid intensity per AWS region, AWS's PUE, NVIDIA
datasheet TDPs, watts per vCPU, the vCPUs and GPUs of each instance type); AWS prices come from
:mod:`fogros_dist.providers.aws.pricing`. Nothing is guessed: an instance type or region the files
lack gives a factor whose value is None, and every figure that needs it is reported as unknown,
with a line naming what to pass instead. Only values that can never be right (negative watts, a
utilisation above 1) raise :class:`~fogros_dist.errors.ConfigError`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fogros_dist.errors import ConfigError
from fogros_dist.providers.aws.pricing import price_table

__all__ = [
    "Factor",
    "MachineFootprint",
    "check_utilisation",
    "factors",
    "footprint_of",
    "footprint_of_aws",
    "footprint_of_local",
    "footprint_of_ssh",
    "run_cost_and_co2e",
]

PROVIDERS = ("aws", "local", "ssh")
# AWS bills Linux instances per second with a one-minute minimum (as pricing.estimate_cost does).
_AWS_MIN_BILLED_S = 60.0
_GIVEN = "given for this run"
_DEFAULT_UTILISATION = (
    "assumed 1.0: every processor at its full rated power (TDP) for the whole run, an upper bound; "
    "pass the measured mean utilisation"
)


@dataclass(frozen=True, kw_only=True)
class Factor:
    """One input of the estimate: its value (None: unknown), unit, source and the year it describes."""

    value: float | None
    unit: str
    source: str
    as_of: str

    @property
    def known(self) -> bool:
        """Whether the value is known."""
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: value, unit, source, as_of."""
        return {"value": self.value, "unit": self.unit, "source": self.source, "as_of": self.as_of}


@dataclass(frozen=True, kw_only=True)
class MachineFootprint:
    """One machine of a run: what it costs per hour, what it draws, where its power comes from.

    Attributes:
        name: the machine's name in the run (``local-0``, ``gpu``).
        provider: ``aws``, ``local`` or ``ssh``.
        instance_type: the EC2 instance type (AWS only).
        region: the AWS region (AWS only; None when the machine takes its profile's region).
        price_per_hour: USD per hour (the on-demand price for AWS; 0 for a machine you own).
        watts: rated power of its processors (GPU TDPs plus vCPUs x watts per vCPU).
        grid_g_per_kwh: the grid's carbon intensity where it runs, gCO2e/kWh.
        pue: the data centre's power usage effectiveness.
        power_parts: what ``watts`` adds up, one entry per part (``1 x T4 70 W``).
        min_billed_seconds: the shortest time the provider bills (60 s on AWS).
    """

    name: str
    provider: str
    instance_type: str | None
    region: str | None
    price_per_hour: Factor
    watts: Factor
    grid_g_per_kwh: Factor
    pue: Factor
    power_parts: tuple[str, ...] = ()
    min_billed_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form: identity, the four factors with their sources, the power breakdown."""
        return {
            "name": self.name,
            "provider": self.provider,
            "instance_type": self.instance_type,
            "region": self.region,
            "price_usd_per_hour": self.price_per_hour.to_dict(),
            "watts": self.watts.to_dict(),
            "power_parts": list(self.power_parts),
            "pue": self.pue.to_dict(),
            "grid_g_co2e_per_kwh": self.grid_g_per_kwh.to_dict(),
            "min_billed_seconds": self.min_billed_seconds,
        }


@functools.cache
def factors() -> dict[str, Any]:
    """The factor table shipped with the package (``footprint_factors.json``)."""
    text = resources.files(__package__).joinpath("footprint_factors.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _entry_factor(entry: dict[str, Any], unit: str) -> Factor:
    return Factor(
        value=float(entry["value"]), unit=unit, source=str(entry["source"]), as_of=str(entry["as_of"])
    )


def _checked(value: float, what: str, fix: str) -> float:
    """``value`` if it is a finite number >= 0, else one line naming it and the fix."""
    if not math.isfinite(value) or value < 0:
        msg = f"{what} {value!r} is not a finite number >= 0: {fix}"
        raise ConfigError(msg)
    return float(value)


def _given(value: float, unit: str, what: str, fix: str) -> Factor:
    return Factor(value=_checked(value, what, fix), unit=unit, source=_GIVEN, as_of=_GIVEN)


def _grid(region: str | None, grid_g_per_kwh: float | None, *, world_default: bool) -> Factor:
    """The grid intensity: the one given, else the region's, else the world average or unknown."""
    unit = "gCO2e/kWh"
    if grid_g_per_kwh is not None:
        return _given(grid_g_per_kwh, unit, "grid intensity", "give gCO2e/kWh, e.g. 380")
    table = factors()
    if region:
        entry = table["grid_g_co2e_per_kwh"].get(region)
        if entry is not None:
            return Factor(
                value=float(entry["value"]),
                unit=unit,
                source=f"{entry['area']}; {entry['basis']}; {entry['source']}",
                as_of=str(entry["as_of"]),
            )
    if world_default:
        world = table["world_average_g_co2e_per_kwh"]
        return Factor(
            value=float(world["value"]),
            unit=unit,
            source=f"world average (no region given): {world['basis']}; {world['source']}",
            as_of=str(world["as_of"]),
        )
    where = f"region {region!r}" if region else "a machine without a region (its AWS profile's)"
    return Factor(
        value=None,
        unit=unit,
        source=f"unknown: footprint_factors.json has no grid intensity for {where}; "
        "pass the grid's gCO2e/kWh",
        as_of=str(table["as_of"]),
    )


def _pue(provider: str, pue: float | None) -> Factor:
    if pue is not None:
        if not math.isfinite(pue) or pue < 1.0:
            msg = f"PUE {pue!r} is below 1.0 or not a number: a PUE is facility power / IT power, e.g. 1.15"
            raise ConfigError(msg)
        return Factor(value=float(pue), unit="ratio", source=_GIVEN, as_of=_GIVEN)
    return _entry_factor(factors()["pue"][provider], "ratio")


def _gpu_model(reported: str) -> str | None:
    """The table's model for a GPU name as nvidia-smi reports it (``Tesla T4``, ``NVIDIA A100-SXM4-40GB``).

    PCIe boards of a model draw less than the SXM boards the table lists: those stay unknown.
    """
    words = [w for w in re.split(r"[^A-Z0-9]+", reported.upper()) if w]
    if "PCIE" in words:
        return None
    known = factors()["gpu_watts"]
    return next((w for w in words if w in known), None)


def _cpu_part(vcpus: int) -> tuple[float, str, Factor]:
    per = _entry_factor(factors()["cpu_watts_per_vcpu"], "W per vCPU")
    assert per.value is not None
    return vcpus * per.value, f"{vcpus} vCPU x {per.value:g} W ({per.source}, {per.as_of})", per


def _power(vcpus: int | None, gpus: Sequence[tuple[str, int]]) -> tuple[Factor, tuple[str, ...]]:
    """The summed rated power of ``vcpus`` vCPUs and ``gpus`` (model, count: models of the
    table's ``gpu_watts``), with its parts."""
    total = 0.0
    parts: list[str] = []
    sources: list[str] = []
    years: list[str] = []
    for model, count in gpus:
        tdp = _entry_factor(factors()["gpu_watts"][model], "W")
        assert tdp.value is not None
        total += count * tdp.value
        parts.append(f"{count} x {model} {tdp.value:g} W ({tdp.source}, {tdp.as_of})")
        sources.append(f"{model}: {tdp.source}")
        years.append(tdp.as_of)
    if vcpus:
        watts, part, per = _cpu_part(vcpus)
        total += watts
        parts.append(part)
        sources.append(f"vCPUs: {per.source}")
        years.append(per.as_of)
    source = "sum of " + "; ".join(sources) if sources else "no processors given"
    power = Factor(value=total, unit="W", source=source, as_of=", ".join(sorted(set(years))) or _GIVEN)
    return power, tuple(parts)


def _aws_price(instance_type: str, region: str | None, *, spot: bool) -> Factor:
    """The on-demand hourly price from pricing.py's table, with the same caveats ``list`` shows."""
    table = price_table()
    hourly = table.hourly(instance_type)
    if hourly is None:
        why = f"unknown: {instance_type} is not in the on-demand price table ({table.source})"
        return Factor(value=None, unit="USD/h", source=why, as_of=table.as_of)
    notes = [f"on-demand, {table.source}"]
    if region not in table.same_price_regions:
        notes.append(f"the price of {table.same_price_regions[0]}; {region or 'this region'} may differ")
    if spot:
        notes.append("spot: the on-demand price is an upper bound")
    return Factor(value=hourly, unit="USD/h", source="; ".join(notes), as_of=table.as_of)


def _aws_power(instance_type: str, watts: float | None) -> tuple[Factor, tuple[str, ...]]:
    """``watts`` as given, else the instance type's GPUs and vCPUs, else unknown."""
    if watts is not None:
        return _given(watts, "W", "watts", "give the machine's power draw in watts, e.g. 300"), ()
    shapes = factors()["instances"]
    shape = shapes["types"].get(instance_type)
    if shape is None:
        why = f"unknown: footprint_factors.json has no vCPUs/GPUs for {instance_type}; pass watts"
        return Factor(value=None, unit="W", source=why, as_of=str(shapes["as_of"])), ()
    gpus = [(str(shape["gpu"]), int(shape["gpus"]))] if "gpu" in shape else []
    power, parts = _power(int(shape["vcpus"]), gpus)
    source = f"{instance_type}: {shapes['source']} (as of {shapes['as_of']}); {power.source}"
    return Factor(value=power.value, unit="W", source=source, as_of=power.as_of), parts


def footprint_of_aws(
    name: str,
    *,
    instance_type: str,
    region: str | None,
    spot: bool = False,
    watts: float | None = None,
    grid_g_per_kwh: float | None = None,
    pue: float | None = None,
) -> MachineFootprint:
    """An AWS machine: price from ``prices.json`` (via pricing.py), power from its GPUs and vCPUs,
    AWS's PUE and its region's grid intensity. ``watts``, ``grid_g_per_kwh`` and ``pue`` override.

    An instance type or region the tables lack gives unknown factors (value None), not an error.
    """
    power, parts = _aws_power(instance_type, watts)
    return MachineFootprint(
        name=_name(name),
        provider="aws",
        instance_type=instance_type,
        region=region or None,
        price_per_hour=_aws_price(instance_type, region, spot=spot),
        watts=power,
        grid_g_per_kwh=_grid(region, grid_g_per_kwh, world_default=False),
        pue=_pue("aws", pue),
        power_parts=parts,
        min_billed_seconds=_AWS_MIN_BILLED_S,
    )


def _owned_power(
    cpus: int | None, gpus: Sequence[str], watts: float | None
) -> tuple[Factor, tuple[str, ...]]:
    """The power of a machine outside AWS: ``watts`` as given, else its CPUs and GPUs, else unknown."""
    if watts is not None:
        return _given(watts, "W", "watts", "give the machine's power draw in watts, e.g. 65"), ()
    models = [_gpu_model(g) for g in gpus]
    written = str(factors()["as_of"])
    if None in models:
        unknown = gpus[models.index(None)]
        why = f"unknown: no power known for GPU {unknown!r} (a PCIe board, or not in footprint_factors.json)"
        return Factor(value=None, unit="W", source=f"{why}; pass watts", as_of=written), ()
    if not gpus and not cpus:
        why = "unknown: no watts, CPUs or GPUs given for this machine"
        return Factor(value=None, unit="W", source=why, as_of=written), ()
    return _power(cpus, [(m, 1) for m in models if m is not None])


def _owned(
    provider: str,
    name: str,
    *,
    cpus: int | None,
    gpus: Sequence[str],
    watts: float | None,
    price_per_hour: float | None,
    grid_g_per_kwh: float | None,
    pue: float | None,
) -> MachineFootprint:
    """A machine the user owns or rents outside AWS (Local, SSH)."""
    if price_per_hour is None:
        price = Factor(
            value=0.0,
            unit="USD/h",
            source="0: a machine of your own is not billed by the hour; pass its price per hour if it is",
            as_of="n/a (no price)",
        )
    else:
        price = _given(price_per_hour, "USD/h", "price per hour", "give USD per hour, e.g. 0.5")
    if cpus is not None and cpus < 0:
        msg = f"cpus {cpus} is negative: give the CPU cores the machine's ranks use, e.g. 1"
        raise ConfigError(msg)
    power, parts = _owned_power(cpus, gpus, watts)
    return MachineFootprint(
        name=_name(name),
        provider=provider,
        instance_type=None,
        region=None,
        price_per_hour=price,
        watts=power,
        grid_g_per_kwh=_grid(None, grid_g_per_kwh, world_default=True),
        pue=_pue(provider, pue),
        power_parts=parts,
    )


def footprint_of_local(
    name: str,
    *,
    cpus: int = 1,
    gpus: Sequence[str] = (),
    watts: float | None = None,
    price_per_hour: float | None = None,
    grid_g_per_kwh: float | None = None,
    pue: float | None = None,
) -> MachineFootprint:
    """A Local machine (on this host): ``cpus`` vCPUs at the table's watts per vCPU plus ``gpus``
    (names as nvidia-smi gives them), unless ``watts`` is given; price 0 unless given; the world
    average grid intensity unless given; PUE 1.0 unless given.

    ``cpus`` defaults to 1: the Local fleet runs one torch thread per rank (its default of
    ``OMP_NUM_THREADS``), so pass the machine's ranks x threads.
    """
    return _owned(
        "local",
        name,
        cpus=cpus,
        gpus=gpus,
        watts=watts,
        price_per_hour=price_per_hour,
        grid_g_per_kwh=grid_g_per_kwh,
        pue=pue,
    )


def footprint_of_ssh(
    name: str,
    *,
    cpus: int | None = None,
    gpus: Sequence[str] = (),
    watts: float | None = None,
    price_per_hour: float | None = None,
    grid_g_per_kwh: float | None = None,
    pue: float | None = None,
) -> MachineFootprint:
    """An SSH host: as :func:`footprint_of_local`, but nothing is assumed about its processors:
    without ``watts``, ``cpus`` or ``gpus`` (the GPUs the probe's nvidia-smi lists) its power, and so
    its energy and CO2e, are unknown."""
    return _owned(
        "ssh",
        name,
        cpus=cpus,
        gpus=gpus,
        watts=watts,
        price_per_hour=price_per_hour,
        grid_g_per_kwh=grid_g_per_kwh,
        pue=pue,
    )


def footprint_of(
    name: str,
    provider: str,
    *,
    instance_type: str | None = None,
    region: str | None = None,
    spot: bool = False,
    cpus: int | None = None,
    gpus: Sequence[str] = (),
    watts: float | None = None,
    price_per_hour: float | None = None,
    grid_g_per_kwh: float | None = None,
    pue: float | None = None,
) -> MachineFootprint:
    """One machine's footprint by provider name (``aws``, ``local``, ``ssh``): the CLI's entry.

    Raises:
        ConfigError: an unknown provider, an AWS machine without an instance type, options that
            mean nothing for the provider, or a value that can never be right.
    """
    if provider not in PROVIDERS:
        msg = f"provider {provider!r} has no footprint model: use one of {', '.join(PROVIDERS)}"
        raise ConfigError(msg)
    if provider == "aws":
        if not instance_type:
            msg = f"AWS machine {name!r} needs its instance type for a footprint, e.g. g4dn.xlarge"
            raise ConfigError(msg)
        if price_per_hour is not None or cpus is not None or gpus:
            msg = (
                f"AWS machine {name!r}: price, cpus and gpus come from its instance type; pass watts= instead"
            )
            raise ConfigError(msg)
        return footprint_of_aws(
            name,
            instance_type=instance_type,
            region=region,
            spot=spot,
            watts=watts,
            grid_g_per_kwh=grid_g_per_kwh,
            pue=pue,
        )
    if instance_type is not None or region is not None or spot:
        msg = f"{provider} machine {name!r}: instance type, region and spot are AWS options; drop them"
        raise ConfigError(msg)
    builder = footprint_of_local if provider == "local" else footprint_of_ssh
    extra: dict[str, Any] = {} if cpus is None else {"cpus": cpus}
    return builder(
        name,
        gpus=gpus,
        watts=watts,
        price_per_hour=price_per_hour,
        grid_g_per_kwh=grid_g_per_kwh,
        pue=pue,
        **extra,
    )


def _name(name: str) -> str:
    if not name.strip():
        msg = "a machine's footprint needs its name, e.g. local-0"
        raise ConfigError(msg)
    return name


def check_utilisation(utilisation: float | None) -> tuple[float, str]:
    """The utilisation to use and its source: 1.0 (stated as an assumption) when None.

    Raises:
        ConfigError: a utilisation outside (0, 1].
    """
    if utilisation is None:
        return 1.0, _DEFAULT_UTILISATION
    if not math.isfinite(utilisation) or not 0.0 < utilisation <= 1.0:
        msg = (
            f"utilisation {utilisation!r} is not in (0, 1]: give the processors' mean busy fraction, e.g. 0.8"
        )
        raise ConfigError(msg)
    return float(utilisation), _GIVEN


def _machine_figures(machine: MachineFootprint, seconds: float, utilisation: float) -> dict[str, Any]:
    """One machine's kWh, kgCO2e and USD, each with its arithmetic, or None and why not."""
    hours = seconds / 3600.0
    billed_hours = max(seconds, machine.min_billed_seconds) / 3600.0
    out: dict[str, Any] = machine.to_dict()
    out["hours"] = hours
    watts, pue, grid, price = (
        machine.watts.value,
        machine.pue.value,
        machine.grid_g_per_kwh.value,
        machine.price_per_hour.value,
    )
    unknown: list[str] = []
    kwh: float | None = None
    if watts is None or pue is None:
        unknown.append(
            f"{machine.name}: energy unknown: {(machine.watts if watts is None else machine.pue).source}"
        )
        out["kwh"], out["kwh_formula"] = None, None
    else:
        kwh = hours * watts * utilisation * pue / 1000.0
        out["kwh"] = kwh
        out["kwh_formula"] = (
            f"{hours:.6g} h x {watts:g} W x {utilisation:g} x PUE {pue:g} / 1000 = {kwh:.6g} kWh"
        )
    if kwh is None or grid is None:
        if grid is None:
            unknown.append(f"{machine.name}: CO2e unknown: {machine.grid_g_per_kwh.source}")
        out["kg_co2e"], out["kg_co2e_formula"] = None, None
    else:
        kg = kwh * grid / 1000.0
        out["kg_co2e"] = kg
        out["kg_co2e_formula"] = f"{kwh:.6g} kWh x {grid:g} gCO2e/kWh / 1000 = {kg:.6g} kgCO2e"
    out["billed_hours"] = billed_hours
    if price is None:
        unknown.append(f"{machine.name}: cost unknown: {machine.price_per_hour.source}")
        out["usd"], out["usd_formula"] = None, None
    else:
        usd = billed_hours * price
        out["usd"] = usd
        minimum = f" (at least {machine.min_billed_seconds:g} s billed)" if machine.min_billed_seconds else ""
        out["usd_formula"] = f"{billed_hours:.6g} h{minimum} x ${price:g}/h = ${usd:.6g}"
    out["unknown"] = unknown
    return out


def run_cost_and_co2e(
    machines: Sequence[MachineFootprint], seconds: float, utilisation: float | None = None
) -> dict[str, Any]:
    """A run's cost, energy and CO2e: every machine for ``seconds``, with the arithmetic spelled out.

    Args:
        machines: the run's machines.
        seconds: how long they ran (wall time).
        utilisation: the processors' mean busy fraction in (0, 1] (default 1.0, an upper bound).

    Returns:
        ``method``, ``seconds``, ``hours``, ``utilisation`` (value and source), ``machines`` (each
        with its factors and their sources, ``kwh``/``kg_co2e``/``usd`` and the formula of each),
        ``total`` (``kwh``, ``kg_co2e``, ``usd``: None when any machine's figure is unknown, never a
        partial sum) and ``unknown`` (one line per figure that could not be computed).

    Raises:
        ConfigError: ``seconds`` negative or not a number, ``utilisation`` outside (0, 1].
    """
    seconds = _checked(seconds, "run seconds", "give the run's wall time in seconds")
    share, share_source = check_utilisation(utilisation)
    per_machine = [_machine_figures(m, seconds, share) for m in machines]
    unknown = [line for m in per_machine for line in m["unknown"]]
    if not machines:
        unknown.append("no machines given: cost, energy and CO2e unknown")

    def total(key: str) -> float | None:
        values = [m[key] for m in per_machine]
        if not values or any(v is None for v in values):
            return None
        return float(sum(values))

    method = factors()["method"]
    return {
        "method": {
            "energy": method["energy"],
            "co2e": method["co2e"],
            "cost": "USD = billed hours x price per hour",
            "source": method["source"],
            "as_of": method["as_of"],
        },
        "seconds": seconds,
        "hours": seconds / 3600.0,
        "utilisation": {"value": share, "source": share_source},
        "machines": per_machine,
        "total": {"kwh": total("kwh"), "kg_co2e": total("kg_co2e"), "usd": total("usd")},
        "unknown": unknown,
    }
