"""The price table kept in the repo and the cost estimates `list` shows."""

from __future__ import annotations

import datetime as dt

import pytest

from fogros_dist.machines import AWS
from fogros_dist.providers.aws.pricing import estimate_cost, price_table
from fogros_dist.providers.aws.provider import AWSProvider


def test_table_has_its_date_and_source() -> None:
    table = price_table()
    dt.date.fromisoformat(table.as_of)
    assert "aws.amazon.com/ec2/pricing" in table.source
    assert table.hourly("g5.xlarge") == pytest.approx(1.006)
    assert all(price > 0 for _, price in table.on_demand)


def test_estimates() -> None:
    hour = estimate_cost(instance_type="g4dn.xlarge", region="us-west-2", seconds=3600, spot=False)
    assert hour.usd == pytest.approx(0.526)
    assert hour.text() == "$0.53"
    # AWS bills at least a minute.
    assert estimate_cost(
        instance_type="t3.micro", region="us-east-1", seconds=1, spot=False
    ).usd == pytest.approx(0.0104 / 60)
    spot = estimate_cost(instance_type="g5.xlarge", region="us-east-1", seconds=1800, spot=True)
    assert spot.text() == "<=$0.50"
    assert "spot: upper bound" in spot.note
    elsewhere = estimate_cost(instance_type="g5.xlarge", region="ap-south-1", seconds=3600, spot=False)
    assert "us-east-1 price; ap-south-1 may differ" in elsewhere.note
    unknown = estimate_cost(instance_type="x9.huge", region="us-east-1", seconds=3600, spot=False)
    assert unknown.usd is None
    assert unknown.text() == "?"


def test_provider_estimates_from_machine_options() -> None:
    estimate = AWSProvider().estimate_cost(AWS(instance_type="p3.2xlarge", region="us-west-2"), seconds=7200)
    assert estimate.usd == pytest.approx(6.12)
