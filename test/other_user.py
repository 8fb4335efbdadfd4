"""Acting as another user of this host (uid 65534, nobody), for the tests of what a second user
sees and may do: ``setpriv`` as root, and this checkout readable by that user.

The second condition fails where the checkout lies under a directory only root may enter (a
clone in a 0700 temporary directory): an editable install then cannot be imported by anyone
else, so those tests say why and skip, as they do without root or setpriv. Importable as
``other_user`` from any test (``test/`` is on sys.path).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

__all__ = ["AS_NOBODY", "unavailable"]

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@functools.cache
def unavailable() -> str:
    """Why code cannot run as user nobody here ("" if it can)."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv to act as another user"
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", "import fogros_dist.cli.main"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"user nobody cannot import this checkout ({last}): it lies under a directory only root may enter"
        )
    return ""
