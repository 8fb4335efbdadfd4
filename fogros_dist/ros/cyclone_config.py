"""Cyclone DDS configuration that keeps DDS traffic on the loopback interface.

Tests, demos and benchmarks must never put DDS on a real network (a workplace rule: no multicast
to a non-loopback interface), so they run with :func:`loopback_config`. It also raises the UDP
message size and socket buffers so that multi-megabyte camera frames cross loopback in a few
large datagrams instead of thousands of 1.3 KB fragments.

Cyclone reads ``CYCLONEDDS_URI`` when a process creates its first participant in a domain, so
apply the configuration before that (rmw_cyclonedds_cpp reads the same variable, appended after
its own discovery settings, so ours wins).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fogros_dist.errors import ConfigError
from fogros_dist.ros.domain import MAX_DOMAIN_ID

__all__ = [
    "LOOPBACK_MAX_PARTICIPANT_INDEX",
    "apply_loopback_config",
    "loopback_config",
    "loopback_env",
]

# Each process's participant(s) in a domain take one index (a UDP port pair); ~20 participants per
# domain per host leave ample room at 60, and 60 keeps the per-domain port range (250) intact.
LOOPBACK_MAX_PARTICIPANT_INDEX = 60


def loopback_config(domain_id: int | None = None, *, max_participant_index: int = 60) -> str:
    """A Cyclone DDS XML configuration confined to ``lo``, for one domain or all of them.

    Multicast is off everywhere; participants find each other by unicast SPDP to 127.0.0.1 on
    the ports of participant indexes ``0..max_participant_index``.

    Args:
        domain_id: the domain the configuration applies to; None for any domain.
        max_participant_index: the highest participant index probed (one index per process and
            domain on this host).

    Returns:
        The XML text, usable directly as ``CYCLONEDDS_URI``.

    Raises:
        ConfigError: ``domain_id`` or ``max_participant_index`` is out of range.
    """
    if domain_id is not None and not 0 <= domain_id <= MAX_DOMAIN_ID:
        msg = f"DDS domain id {domain_id} is out of range: use 0..{MAX_DOMAIN_ID}"
        raise ConfigError(msg)
    if not 1 <= max_participant_index <= 100:
        msg = f"max_participant_index {max_participant_index} is out of range: use 1..100"
        raise ConfigError(msg)
    domain = "any" if domain_id is None else str(domain_id)
    # Why each knob:
    # - MaxMessageSize/FragmentSize: lo's MTU is 64 KiB; 1344 B fragments (the default) make a
    #   6 MB image 4500 datagrams, 62 KiB ones make it 97.
    # - socket buffers: a whole 6 MB frame fits in the kernel queue while the reader catches up;
    #   min="default" keeps startup working where net.core.rmem_max is lower.
    # - WhcHigh: a reliable writer stalls once unacknowledged data exceeds it; a frame must fit.
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<CycloneDDS xmlns="https://cdds.io/config">
  <Domain Id="{domain}">
    <General>
      <Interfaces>
        <NetworkInterface name="lo" multicast="false"/>
      </Interfaces>
      <AllowMulticast>false</AllowMulticast>
      <MaxMessageSize>65500B</MaxMessageSize>
      <FragmentSize>63000B</FragmentSize>
    </General>
    <Discovery>
      <ParticipantIndex>auto</ParticipantIndex>
      <MaxAutoParticipantIndex>{max_participant_index}</MaxAutoParticipantIndex>
      <Peers>
        <Peer address="127.0.0.1"/>
      </Peers>
    </Discovery>
    <Internal>
      <SocketReceiveBufferSize min="default" max="8MiB"/>
      <SocketSendBufferSize min="default" max="8MiB"/>
      <Watermarks>
        <WhcHigh>32MiB</WhcHigh>
        <WhcHighInit>16MiB</WhcHighInit>
      </Watermarks>
    </Internal>
  </Domain>
</CycloneDDS>
"""


def loopback_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment variables that confine a child process's DDS (Cyclone or ROS 2) to loopback.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` makes rmw itself stay local too (Iron and later).

    Raises:
        ConfigError: as :func:`loopback_config`.
    """
    return {
        "CYCLONEDDS_URI": loopback_config(domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }


def apply_loopback_config(
    domain_id: int | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """Put :func:`loopback_env` into ``os.environ``: for this process and every child it starts.

    Call it before creating any DDS participant (Cyclone reads the variable once per domain).

    Args:
        domain_id: as :func:`loopback_config`.
        environ: extra variables to set at the same time.

    Returns:
        The previous values (None where unset), to restore with :func:`os.environ.update` or pop.

    Raises:
        ConfigError: as :func:`loopback_config`.
    """
    values = {**loopback_env(domain_id), **(environ or {})}
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    return previous
