"""The Zenoh link between a robot and its machines: session config, topic bridge, link stats.

Import the submodules directly (:mod:`~fogros_dist.net.bridge`, :mod:`~fogros_dist.net.stats`,
:mod:`~fogros_dist.net.zenoh_config`); this package imports nothing so that reading stats does
not load Zenoh.
"""

from __future__ import annotations

__all__: list[str] = []
