"""A node printing ~100 MB in a detached deployment: its output is stored once, bounded by the
deployment's ``log_max_bytes``, and `fogros-dist logs` still shows its last lines in order.

Until issue 8 it was stored twice (the node's file and the detached supervisor's log, which
followed it), each copy unbounded: ~230 MB on disk for this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]
LINES = 15_000_000  # `seq` prints ~109 MB
MAX = 1024 * 1024
DEPLOYMENT = f"""\
name = "flood"
log_max_bytes = {MAX}
[[machines]]
name = "gpu"
provider = "local"
[[nodes]]
name = "flood"
package = "fogros_dist"
executable = "edge_detector"
machine = "gpu"
# The prefix runs instead of the node: seq, then stay up until stopped.
prefix = ["sh", "-c", "seq 1 {LINES}; exec sleep 600", "sh"]
topics_in = ["/camera/image:sensor_msgs/msg/Image"]
topics_out = ["/camera/edges:sensor_msgs/msg/Image"]
"""


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_hundred_megabytes_of_output_are_stored_once_and_bounded(tmp_path: Path, robot_domain: int) -> None:
    spec = tmp_path / "flood.toml"
    spec.write_text(DEPLOYMENT)
    home = tmp_path / "home"
    env = dict(os.environ, FOGROS_DIST_HOME=str(home), ROS_DOMAIN_ID=str(robot_domain), PYTHONUNBUFFERED="1")

    def fogros(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    up = fogros("up", "--detach", str(spec))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        out = home / "deployments" / "flood" / "machines" / "gpu" / "logs" / "flood.out"
        deadline = time.monotonic() + 120
        while not out.read_bytes().endswith(f"{LINES}\n".encode()):
            assert time.monotonic() < deadline, "the node's output did not all arrive"
            time.sleep(0.2)
        parts = sorted(out.parent.glob("flood.out*"))
        assert len(parts) == 4
        assert all(p.stat().st_size <= MAX for p in parts)
        # Everything the deployment keeps on disk: four 1 MiB parts of the node's stdout, and a
        # little from the bridges, the supervisor and the state.
        assert _size(home) < 4 * MAX + 256 * 1024
        supervisor_log = home / "deployments" / ".flood-supervisor" / "supervisor.log"
        assert supervisor_log.stat().st_size < 64 * 1024
        assert f"] {LINES}\n" not in supervisor_log.read_text()
        logs = fogros("logs", "flood", "--machine", "gpu", "-n", "3")
        assert logs.returncode == 0, logs.stderr
        assert [line for line in logs.stdout.splitlines() if "[cloud:gpu]" in line] == [
            f"[cloud:gpu] {n}" for n in range(LINES - 2, LINES + 1)
        ]
    finally:
        down = fogros("down", "flood")
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads(fogros("list", "--json").stdout) == []
