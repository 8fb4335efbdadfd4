"""The SSHHost provider (any machine reachable over SSH)."""

from __future__ import annotations

from fogros_dist.providers.ssh.provider import SSHProvider

__all__ = ["SSHProvider"]
