"""A run's cost, energy and CO2e: the arithmetic against hand-computed values, the sources and dates
of every factor, and unknown inputs reported as unknown (never guessed, never 0)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.train.footprint import (
    factors,
    footprint_of,
    footprint_of_aws,
    footprint_of_local,
    footprint_of_ssh,
    run_cost_and_co2e,
)

REPO = Path(__file__).resolve().parents[2]
YEAR = re.compile(r"\b(19|20)\d\d\b")


def _prices() -> dict[str, Any]:
    text = (REPO / "fogros_dist" / "providers" / "aws" / "prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_g4dn_xlarge_in_us_west_2_for_one_hour_matches_the_hand_computed_figures() -> None:
    machine = footprint_of("gpu", "aws", instance_type="g4dn.xlarge", region="us-west-2")
    out = run_cost_and_co2e([machine], 3600.0)
    # By hand: 1 T4 (70 W, NVIDIA datasheet) + 4 vCPU x 3.5 W = 84 W; AWS PUE 1.14;
    # NWPP 635.3 lb/MWh = 288.2 g/kWh; $0.526/h on demand (prices.json of 2025-01-15).
    assert _prices()["on_demand"]["g4dn.xlarge"] == 0.526
    row = out["machines"][0]
    assert row["watts"]["value"] == 84.0
    assert row["pue"]["value"] == 1.14
    assert row["grid_g_co2e_per_kwh"]["value"] == 288.2
    assert row["kwh"] == pytest.approx(1.0 * 84.0 * 1.14 / 1000)  # 0.09576 kWh
    assert row["kwh"] == pytest.approx(0.09576)
    assert row["kg_co2e"] == pytest.approx(0.09576 * 288.2 / 1000)  # 0.0275980 kg
    assert row["usd"] == pytest.approx(0.526)
    assert out["total"] == {"kwh": row["kwh"], "kg_co2e": row["kg_co2e"], "usd": row["usd"]}
    assert out["unknown"] == []
    # The arithmetic is written out, with the factors it used.
    assert row["kwh_formula"] == "1 h x 84 W x 1 x PUE 1.14 / 1000 = 0.09576 kWh"
    assert row["kg_co2e_formula"] == "0.09576 kWh x 288.2 gCO2e/kWh / 1000 = 0.027598 kgCO2e"
    assert row["usd_formula"].endswith("x $0.526/h = $0.526")
    assert "Patterson" in out["method"]["source"]
    assert "eGRID2023" in row["grid_g_co2e_per_kwh"]["source"]
    assert row["price_usd_per_hour"]["as_of"] == "2025-01-15"
    assert any("T4 70 W" in part for part in row["power_parts"])


def test_utilisation_scales_energy_and_co2e_but_not_cost() -> None:
    machine = footprint_of_aws("gpu", instance_type="g4dn.xlarge", region="us-west-2")
    half = run_cost_and_co2e([machine], 7200.0, utilisation=0.5)
    assert half["total"]["kwh"] == pytest.approx(2.0 * 84.0 * 0.5 * 1.14 / 1000)  # 0.09576 kWh
    assert half["total"]["usd"] == pytest.approx(2 * 0.526)
    assert half["utilisation"] == {"value": 0.5, "source": "given for this run"}
    assumed = run_cost_and_co2e([machine], 7200.0)
    assert assumed["utilisation"]["value"] == 1.0
    assert "upper bound" in assumed["utilisation"]["source"]


def test_aws_bills_at_least_a_minute() -> None:
    machine = footprint_of_aws("gpu", instance_type="g4dn.xlarge", region="us-east-1")
    out = run_cost_and_co2e([machine], 30.0)
    assert out["machines"][0]["usd"] == pytest.approx(60.0 / 3600 * 0.526)
    assert out["machines"][0]["kwh"] == pytest.approx(30.0 / 3600 * 84.0 * 1.14 / 1000)


def test_two_machines_add_up_and_spot_is_an_upper_bound() -> None:
    a = footprint_of_aws("a", instance_type="p3.2xlarge", region="us-east-1", spot=True)
    b = footprint_of_aws("b", instance_type="c5.xlarge", region="us-east-2")
    out = run_cost_and_co2e([a, b], 3600.0)
    # p3.2xlarge: 1 V100 300 W + 8 x 3.5 W = 328 W; c5.xlarge: 4 x 3.5 W = 14 W.
    assert a.watts.value == 328.0
    assert b.watts.value == 14.0
    kwh_a, kwh_b = 328.0 * 1.14 / 1000, 14.0 * 1.14 / 1000
    assert out["total"]["kwh"] == pytest.approx(kwh_a + kwh_b)
    assert out["total"]["kg_co2e"] == pytest.approx((kwh_a * 270.5 + kwh_b * 415.5) / 1000)
    assert out["total"]["usd"] == pytest.approx(3.06 + 0.17)
    assert "upper bound" in a.price_per_hour.source


def test_every_factor_has_a_source_and_a_dated_year() -> None:
    table = factors()
    entries: list[tuple[str, dict[str, Any]]] = [
        ("method", table["method"]),
        ("world", table["world_average_g_co2e_per_kwh"]),
        ("cpu", table["cpu_watts_per_vcpu"]),
        ("instances", table["instances"]),
    ]
    entries += [(f"grid {k}", v) for k, v in table["grid_g_co2e_per_kwh"].items()]
    entries += [(f"pue {k}", v) for k, v in table["pue"].items()]
    entries += [(f"gpu {k}", v) for k, v in table["gpu_watts"].items()]
    assert len(entries) > 20
    for where, entry in entries:
        assert str(entry.get("source", "")).strip(), f"{where} has no source"
        assert YEAR.search(str(entry.get("as_of", ""))), f"{where} has no dated as_of: {entry.get('as_of')!r}"
        if "value" in entry:
            assert isinstance(entry["value"], int | float), where
            assert entry["value"] > 0, where


def test_regions_without_a_figure_are_listed_as_such() -> None:
    table = factors()
    covered = set(table["grid_g_co2e_per_kwh"])
    missing = set(table["grid_not_covered"]["regions"])
    assert not covered & missing
    assert {"us-east-1", "us-east-2", "us-west-2"} <= covered  # the price table's regions
    assert table["grid_not_covered"]["why"]


def test_egrid_figures_are_their_lb_per_mwh_converted() -> None:
    converted = 0
    for region, entry in factors()["grid_g_co2e_per_kwh"].items():
        if "lb_per_mwh" in entry:
            # 1 lb/MWh = 453.59237 g / 1000 kWh.
            assert entry["value"] == pytest.approx(entry["lb_per_mwh"] * 0.45359237, abs=0.05), region
            converted += 1
    assert converted == 4  # us-east-1, us-east-2, us-west-1, us-west-2


def test_every_priced_instance_type_has_a_shape_and_every_gpu_a_tdp() -> None:
    shapes = factors()["instances"]["types"]
    assert set(_prices()["on_demand"]) <= set(shapes)
    for name, shape in shapes.items():
        assert shape["vcpus"] >= 1, name
        if "gpu" in shape:
            assert shape["gpu"] in factors()["gpu_watts"], name
            machine = footprint_of_aws("m", instance_type=name, region="us-east-1")
            assert machine.watts.value is not None, name
            assert machine.watts.value > 0, name


def test_a_region_without_a_figure_leaves_co2e_unknown_with_the_fix() -> None:
    machine = footprint_of_aws("gpu", instance_type="g4dn.xlarge", region="eu-north-1")
    assert machine.grid_g_per_kwh.value is None
    assert "eu-north-1" in machine.grid_g_per_kwh.source
    out = run_cost_and_co2e([machine], 3600.0)
    row = out["machines"][0]
    assert row["kg_co2e"] is None
    assert row["kwh"] == pytest.approx(0.09576)  # energy does not need the grid
    assert row["usd"] == pytest.approx(0.526)
    assert out["total"]["kg_co2e"] is None  # never a partial sum
    assert len(out["unknown"]) == 1
    assert "eu-north-1" in out["unknown"][0]
    assert "gCO2e/kWh" in out["unknown"][0]
    # The price table's regions are named, as pricing.py does.
    assert "may differ" in machine.price_per_hour.source


def test_a_machine_without_a_region_has_unknown_co2e_unless_given() -> None:
    unknown = footprint_of_aws("gpu", instance_type="g5.xlarge", region=None)
    assert unknown.grid_g_per_kwh.value is None
    given = footprint_of_aws("gpu", instance_type="g5.xlarge", region=None, grid_g_per_kwh=400.0)
    assert given.grid_g_per_kwh.value == 400.0
    assert given.grid_g_per_kwh.source == "given for this run"


def test_an_unknown_instance_type_leaves_price_and_power_unknown() -> None:
    machine = footprint_of_aws("gpu", instance_type="g7e.huge", region="us-west-2")
    assert machine.price_per_hour.value is None
    assert machine.watts.value is None
    out = run_cost_and_co2e([machine], 3600.0)
    assert out["total"] == {"kwh": None, "kg_co2e": None, "usd": None}
    assert any("g7e.huge" in line and "cost unknown" in line for line in out["unknown"])
    assert any("g7e.huge" in line and "energy unknown" in line for line in out["unknown"])
    with_watts = footprint_of_aws("gpu", instance_type="g7e.huge", region="us-west-2", watts=500.0)
    assert run_cost_and_co2e([with_watts], 3600.0)["total"]["kwh"] == pytest.approx(500 * 1.14 / 1000)


def test_local_machine_defaults_stated_and_overridable() -> None:
    machine = footprint_of_local("local-0")
    assert machine.price_per_hour.value == 0.0
    assert machine.watts.value == 3.5  # one vCPU: the fleet's one torch thread per rank
    assert machine.pue.value == 1.0
    assert machine.grid_g_per_kwh.value == 481.0
    assert "world average" in machine.grid_g_per_kwh.source
    out = run_cost_and_co2e([machine], 7200.0)
    assert out["total"]["kwh"] == pytest.approx(2 * 3.5 / 1000)  # 0.007 kWh
    assert out["total"]["kg_co2e"] == pytest.approx(0.007 * 481 / 1000)
    assert out["total"]["usd"] == 0.0
    given = footprint_of("local-0", "local", watts=65.0, price_per_hour=0.1, grid_g_per_kwh=200.0, pue=1.2)
    out = run_cost_and_co2e([given], 3600.0)
    assert out["total"]["kwh"] == pytest.approx(65 * 1.2 / 1000)
    assert out["total"]["kg_co2e"] == pytest.approx(65 * 1.2 / 1000 * 200 / 1000)
    assert out["total"]["usd"] == pytest.approx(0.1)


def test_ssh_host_power_from_its_gpus_or_unknown() -> None:
    nothing = footprint_of_ssh("gpu")
    assert nothing.watts.value is None
    assert run_cost_and_co2e([nothing], 60.0)["total"]["kwh"] is None
    host = footprint_of_ssh("gpu", cpus=8, gpus=["Tesla T4", "NVIDIA A100-SXM4-40GB"])
    assert host.watts.value == 70.0 + 400.0 + 8 * 3.5
    pcie = footprint_of_ssh("gpu", gpus=["NVIDIA A100-PCIE-40GB"])
    assert pcie.watts.value is None  # PCIe boards draw less than the SXM figure
    assert "PCIE" in pcie.watts.source.upper()


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: run_cost_and_co2e([], 10.0, utilisation=1.5), "1.5"),
        (lambda: run_cost_and_co2e([], 10.0, utilisation=0.0), "0.0"),
        (lambda: run_cost_and_co2e([], float("nan")), "nan"),
        (lambda: run_cost_and_co2e([], -1.0), "-1.0"),
        (lambda: footprint_of_local("l", watts=-5.0), "-5.0"),
        (lambda: footprint_of_local("l", pue=0.9), "0.9"),
        (lambda: footprint_of("m", "gcp"), "gcp"),
        (lambda: footprint_of("m", "aws"), "instance type"),
        (lambda: footprint_of("m", "local", region="us-east-1"), "AWS options"),
        (lambda: footprint_of("", "local"), "name"),
    ],
)
def test_bad_values_are_one_clear_line(call: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        call()
    message = str(raised.value)
    assert needle in message
    assert "\n" not in message


def test_no_machines_is_unknown_not_zero() -> None:
    out = run_cost_and_co2e([], 3600.0)
    assert out["total"] == {"kwh": None, "kg_co2e": None, "usd": None}
    assert out["unknown"] == ["no machines given: cost, energy and CO2e unknown"]


def test_the_factor_table_ships_with_the_package() -> None:
    shipped = resources.files("fogros_dist.train").joinpath("footprint_factors.json")
    assert json.loads(shipped.read_text(encoding="utf-8")) == factors()
    # Installed as prices.json is: listed in setup.py's package_data.
    assert '"train/footprint_factors.json"' in (REPO / "setup.py").read_text(encoding="utf-8")
