"""Two robots on one host (two ``FOGROS_DIST_HOME``\\ s, one of them another user): their Local
machines get distinct ROS domains, so one robot never receives the other's replies.

Both deployments have the same name and the same topics, as two users of one lab image would.
They claim domains in the host's real claims directory, as every user on the host does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import other_user
import pytest
from e2e_helpers import OUT_TOPIC, edges_round_trip

from fogros_dist.deploy.state import StateStore

CLI = ["-m", "fogros_dist.cli.main"]
DEPLOYMENT = """\
name = "twins"
[[machines]]
name = "gpu"
provider = "local"
[[nodes]]
name = "edges"
package = "fogros_dist"
executable = "edge_detector"
machine = "gpu"
topics_in = ["/camera/image:sensor_msgs/msg/Image"]
topics_out = ["/camera/edges:sensor_msgs/msg/Image"]
"""


def _as_other_user() -> tuple[list[str], dict[str, str]] | None:
    """How to run the CLI as user nobody: setpriv, an interpreter nobody may execute (this venv's
    may live under a 0700 home) and the path to this checkout and its packages; None if not."""
    if other_user.unavailable():
        return None
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        return None
    import site

    path = os.pathsep.join([str(Path(__file__).resolve().parents[2]), *site.getsitepackages()])
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(system)]
    return prefix, {"PYTHONPATH": path}


def _robot_domain(new_domain_id: Callable[[], int]) -> int:
    """A test domain below the Local machines' range (120..232): a robot's own domain is not a
    claim, so one inside the range could be handed to the other robot's machine."""
    for _ in range(200):
        domain = new_domain_id()
        if domain < 120:
            return domain
    pytest.skip("no free test domain below 120")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory user nobody can reach too (pytest's tmp_path lies under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="fogros-twins-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_two_homes_get_distinct_domains_and_replies_do_not_cross(
    new_domain_id: Callable[[], int], shared_dir: Path
) -> None:
    spec = shared_dir / "twins.toml"
    spec.write_text(DEPLOYMENT)
    spec.chmod(0o644)
    # The second robot is another user where root can act as one, as on a shared lab machine;
    # else this user again, with a home of its own.
    other = _as_other_user()
    ways = [([sys.executable], {}), other or ([sys.executable], {})]
    robots = []
    for index, (prefix, extra_env) in enumerate(ways):
        home = shared_dir / f"home{index}"
        home.mkdir()
        if index == 1 and other is not None:
            os.chown(home, 65534, 65534)
        domain = _robot_domain(new_domain_id)
        env = dict(
            os.environ,
            FOGROS_DIST_HOME=str(home),
            ROS_DOMAIN_ID=str(domain),
            PYTHONUNBUFFERED="1",
            **extra_env,
        )
        robots.append((prefix, home, domain, env))
    try:
        for prefix, _home, _domain, env in robots:
            up = subprocess.run(
                [*prefix, *CLI, "up", "--detach", str(spec)],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert up.returncode == 0, up.stdout + up.stderr
        machine_domains = []
        for _prefix, home, _domain, _env in robots:
            host = StateStore(home).load("twins").host("gpu")
            assert host is not None
            machine_domains.append(int(dict(host.env)["ROS_DOMAIN_ID"]))
        assert machine_domains[0] != machine_domains[1]
        # Robot 0 asks; its reply comes back to it, and robot 1 hears nothing of it.
        from fogros_dist.ros.dds import DdsGraph

        heard = threading.Event()
        other = DdsGraph(robots[1][2], distro="jazzy")
        try:
            other.subscribe(OUT_TOPIC, lambda _cdr: heard.set())
            reply = edges_round_trip(robots[0][2], timeout=60)
            assert reply.encoding == "mono8"
            assert not heard.wait(3.0)
        finally:
            other.close()
    finally:
        for prefix, _home, _domain, env in robots:
            subprocess.run(
                [*prefix, *CLI, "down", "twins"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
    for _prefix, home, _domain, _env in robots:
        assert StateStore(home).names() == []
