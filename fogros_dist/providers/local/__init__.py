"""The Local provider (processes on this machine): the embedded default."""

from __future__ import annotations

from fogros_dist.providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
