"""Fixtures for the remote layer's tests: real OpenSSH servers in network namespaces."""

from __future__ import annotations

from ssh_fixtures import alpha, beta, known_hosts, scratch_host, ssh_lab, wheel_cache

__all__ = ["alpha", "beta", "known_hosts", "scratch_host", "ssh_lab", "wheel_cache"]
