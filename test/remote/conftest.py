"""Fixtures for the remote layer's tests: real OpenSSH servers in network namespaces."""

from __future__ import annotations

from jump_fixtures import bastion, hidden, jump_known_hosts
from ssh_fixtures import alpha, beta, known_hosts, scratch_host, ssh_lab, wheel_cache

__all__ = [
    "alpha",
    "bastion",
    "beta",
    "hidden",
    "jump_known_hosts",
    "known_hosts",
    "scratch_host",
    "ssh_lab",
    "wheel_cache",
]
