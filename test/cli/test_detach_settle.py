"""`up --detach` of a node that dies at once is an `up` that failed: non-zero, the reason named,
and the record kept, released, until `down`."""

from __future__ import annotations

import json
from pathlib import Path

from cli_test_helpers import Run


def _dying_package(root: Path) -> Path:
    """An ament-style prefix whose one executable starts, complains and exits 3 a moment later."""
    exe = root / "lib" / "dying" / "die_soon"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\necho starting\nsleep 0.5\necho 'fatal: lidar not found' >&2\nexit 3\n")
    exe.chmod(0o755)
    return root


def test_a_node_that_dies_during_the_settle_period_fails_the_detached_up(
    fogros: Run, cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli_env["AMENT_PREFIX_PATH"] = str(_dying_package(tmp_path / "prefix"))
    spec = tmp_path / "d.toml"
    spec.write_text(
        'name = "settle"\n[[machines]]\nname = "gpu"\n[[nodes]]\nname = "n1"\npackage = "dying"\n'
        'executable = "die_soon"\nmachine = "gpu"\n'
    )
    up = fogros("up", str(spec), "--detach", "--settle", "5")
    assert up.returncode == 1, up.stdout + up.stderr
    line = up.stderr.strip()
    assert "\n" not in line, line
    assert "deployment 'settle'" in line
    assert "node 'n1' on machine 'gpu' exited with code 3" in line, line
    assert "fatal: lidar not found" in line, line
    rows = json.loads(fogros("list", "--json").stdout)
    assert len(rows) == 1
    assert rows[0]["status"].startswith("failed: node 'n1' on machine 'gpu' exited with code 3")
    assert rows[0]["machines"] == []
    assert rows[0]["nodes"] == ["n1@gpu (dead: exit 3)"]
    down = fogros("down", "settle")
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads(fogros("list", "--json").stdout) == []
