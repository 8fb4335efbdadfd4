"""Fixtures for the SSHHost provider's tests: the remote layer's namespace SSH hosts."""

from __future__ import annotations

import sys
from pathlib import Path

# The namespace lab lives with the remote layer's tests; both directories share one per session.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "remote"))

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
