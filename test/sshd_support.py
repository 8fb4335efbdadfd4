"""What OpenSSH's sshd needs before any test can start one (shared by every sshd fixture)."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["SSHD", "ensure_privilege_separation_dir"]

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
_PRIVSEP_DIR = Path("/run/sshd")


def ensure_privilege_separation_dir() -> None:
    """Create ``/run/sshd``, without which sshd refuses to start.

    Only sshd's service unit or init script makes it, so a fresh machine (or a container) that
    never ran the service lacks it. It is empty and harmless, so it is left in place.
    """
    _PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
