"""Machine providers: one package each, found through :mod:`fogros_dist.registry`."""

from __future__ import annotations
