"""Estimated cost of an AWS machine so far, from the on-demand price table kept in the repo.

The table (``prices.json``) carries the date it was taken (``as_of``) and its source; `list`
shows the estimate with that date, never as a bill. Spot machines are shown at the on-demand
price as an upper bound (the spot market price is at most that). Nothing here calls AWS.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["CostEstimate", "PriceTable", "estimate_cost", "price_table"]


@dataclass(frozen=True, kw_only=True)
class PriceTable:
    """On-demand prices (USD per instance-hour) and where they come from."""

    as_of: str
    source: str
    same_price_regions: tuple[str, ...]
    on_demand: tuple[tuple[str, float], ...]

    def hourly(self, instance_type: str) -> float | None:
        """The on-demand hourly price of ``instance_type``, or None when the table lacks it."""
        return dict(self.on_demand).get(instance_type)


@dataclass(frozen=True, kw_only=True)
class CostEstimate:
    """What a machine has cost so far, as far as the price table can tell."""

    usd: float | None
    hourly_usd: float | None
    note: str

    def text(self) -> str:
        """Short form for a table cell: ``$1.23``, ``<=$1.23`` (spot) or ``?``."""
        if self.usd is None:
            return "?"
        prefix = "<=" if "spot" in self.note else ""
        return f"{prefix}${self.usd:.2f}"


@functools.cache
def price_table() -> PriceTable:
    """The price table shipped with the package."""
    text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return PriceTable(
        as_of=str(data["as_of"]),
        source=str(data["source"]),
        same_price_regions=tuple(data["same_price_regions"]),
        on_demand=tuple(sorted((str(k), float(v)) for k, v in data["on_demand"].items())),
    )


def estimate_cost(*, instance_type: str, region: str, seconds: float, spot: bool) -> CostEstimate:
    """Estimate the cost of running ``instance_type`` in ``region`` for ``seconds``.

    AWS bills Linux instances per second (one minute minimum), so the estimate is linear in time.
    Returns an estimate with ``usd`` None when the type is not in the table.
    """
    table = price_table()
    hourly = table.hourly(instance_type)
    if hourly is None:
        return CostEstimate(
            usd=None, hourly_usd=None, note=f"{instance_type} is not in the price table of {table.as_of}"
        )
    notes = [f"on-demand ${hourly:g}/h as of {table.as_of}"]
    if region not in table.same_price_regions:
        notes.append(f"{table.same_price_regions[0]} price; {region} may differ")
    if spot:
        notes.append("spot: upper bound")
    billed = max(seconds, 60.0)
    return CostEstimate(usd=hourly * billed / 3600.0, hourly_usd=hourly, note=", ".join(notes))
