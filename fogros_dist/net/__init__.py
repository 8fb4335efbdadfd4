"""The Zenoh link between a robot and its machines: session config, topic bridge, link stats.

Import the submodules directly: :mod:`~fogros_dist.net.bridge` (the bridge, its Zenoh keys and
helpers), :mod:`~fogros_dist.net.bridge_main` (the bridge process), :mod:`~fogros_dist.net.stats`
(counters, stats files, the table), :mod:`~fogros_dist.net.zenoh_config` (session configuration)
and :mod:`~fogros_dist.net.cdr_check` (inbound message checks); the bridge's parts for honest
counters and link health are :mod:`~fogros_dist.net.sender`, :mod:`~fogros_dist.net.flow`,
:mod:`~fogros_dist.net.backlog`, :mod:`~fogros_dist.net.sequence`,
:mod:`~fogros_dist.net.delivery`, :mod:`~fogros_dist.net.pacing`, :mod:`~fogros_dist.net.control`
and :mod:`~fogros_dist.net.link_health`. This package imports nothing, so
reading stats does not load Zenoh.
"""

from __future__ import annotations

__all__: list[str] = []
