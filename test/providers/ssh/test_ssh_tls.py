"""An SSH deployment's link: mTLS by default, the machine bridge listening only on the address the
robot reaches (checked with ``ss -ltn`` in the host's namespace), private keys 0600 on both ends,
strangers from the robot's network kept out while the node answers; plain TCP as an opt-in that
warns."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_helpers import edge_deployment, edges_round_trip
from ssh_fixtures import ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.net.tls import BridgeCredentials
from fogros_dist.remote import selfwheel
from fogros_dist.spec import BridgeSpec, DeploymentSpec, MachineSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "net"))

from tls_strangers import STRANGERS, assert_kept_out, assert_let_in, visit_link

pytestmark = pytest.mark.netns


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _listening(host: LabHost, port: int) -> list[str]:
    """The local addresses of the TCP listeners on ``port`` in the host's namespace."""
    listed = subprocess.run(
        ["ip", "netns", "exec", host.netns, "ss", "-ltnH"], capture_output=True, text=True, check=True
    ).stdout
    found = [line.split()[3] for line in listed.splitlines() if len(line.split()) > 3]
    return [address for address in found if address.rsplit(":", 1)[-1] == str(port)]


@contextmanager
def _up(spec: DeploymentSpec, tmp_path: Path, robot_domain: int, stages: list[Stage]) -> Iterator[Deployment]:
    deployment = Deployment(
        spec, store=StateStore(tmp_path / "home"), reporter=stages.append, robot_domain_id=robot_domain
    )
    deployment.up()
    try:
        yield deployment
    finally:
        deployment.down()


@pytest.fixture
def _pinned_self(monkeypatch: pytest.MonkeyPatch, wheel_cache: Path) -> None:
    monkeypatch.setenv("FOGROS_DIST_CACHE", str(wheel_cache))
    # The robot's code as it was when the test began (an edit meanwhile would reinstall it).
    snapshot = selfwheel.package_files()
    monkeypatch.setattr(selfwheel, "package_files", lambda: snapshot)


@pytest.mark.usefixtures("_pinned_self")
def test_an_ssh_deployment_runs_over_mtls_on_the_reached_address_and_keeps_strangers_out(
    *, ssh_lab: SSHLab, alpha: LabHost, known_hosts: Path, tmp_path: Path, robot_domain: int
) -> None:
    machine = MachineSpec(
        name="gpu", provider="ssh", options=tuple(sorted(ssh_options(ssh_lab, alpha, known_hosts).items()))
    )
    spec = edge_deployment("ssh-tls", machine)
    stages: list[Stage] = []
    with _up(spec, tmp_path, robot_domain, stages) as deployment:
        host = deployment.state.hosts[0]
        port = host.bridge_port
        machine_spec = json.loads((deployment.state_dir / "bridge-gpu.json").read_text())
        assert machine_spec["listen"] == [f"tls/{alpha.address}:{port}"]
        # Only there: not 0.0.0.0, not every interface of the host.
        assert _listening(alpha, port) == [f"{alpha.address}:{port}"]
        bridged = next(s.message for s in stages if s.stage == "bridged")
        assert bridged.endswith("over Zenoh (mTLS)"), bridged
        # Keys 0600 in 0700 directories on both ends (namespaces share the filesystem).
        robot = BridgeCredentials(directory=deployment.state_dir / "tls" / "robot")
        staged = BridgeCredentials(directory=deployment.state_dir / "tls" / "machines" / "gpu")
        on_host = BridgeCredentials(directory=Path(machine_spec["bridge"]["tls_dir"]))
        assert on_host.directory == Path(host.workdir) / "tls"
        for side in (robot, staged, on_host):
            assert (_mode(side.private_key), _mode(side.directory)) == (0o600, 0o700), side
        assert on_host.private_key.read_bytes() == staged.private_key.read_bytes()
        assert int(edges_round_trip(robot_domain).data.max()) == 255

        visits = visit_link(
            kinds=(*STRANGERS, "member"),
            deployment=spec.name,
            machine="gpu",
            host=alpha.address,
            port=port,
            deployment_ca=robot.ca_certificate,
            member=robot,
            workdir=tmp_path,
            robot_domain=robot_domain,
        )
    for visit in visits[:-1]:
        assert_kept_out(visit)
    assert_let_in(visits[-1], deployment=spec.name, machine="gpu")
    # After `down` the deployment's key material is gone from both ends.
    assert not robot.directory.exists()
    assert not on_host.directory.exists()


@pytest.mark.usefixtures("_pinned_self")
def test_plaintext_tcp_is_an_opt_in_that_warns(
    *, ssh_lab: SSHLab, alpha: LabHost, known_hosts: Path, tmp_path: Path, robot_domain: int
) -> None:
    machine = MachineSpec(
        name="gpu", provider="ssh", options=tuple(sorted(ssh_options(ssh_lab, alpha, known_hosts).items()))
    )
    spec = dataclasses.replace(edge_deployment("ssh-tcp", machine), bridge=BridgeSpec(protocol="tcp"))
    stages: list[Stage] = []
    with _up(spec, tmp_path, robot_domain, stages) as deployment:
        host = deployment.state.hosts[0]
        assert int(edges_round_trip(robot_domain).data.max()) == 255
        machine_spec = json.loads((deployment.state_dir / "bridge-gpu.json").read_text())
        assert machine_spec["listen"] == [f"tcp/{alpha.address}:{host.bridge_port}"]
        assert machine_spec["bridge"]["tls_dir"] == ""
        assert _listening(alpha, host.bridge_port) == [f"{alpha.address}:{host.bridge_port}"]
        bridge_log = (Path(host.workdir) / "logs" / "bridge.err").read_text()
    warnings = [s for s in stages if s.stage == "warning"]
    assert [(s.machine, s.message) for s in warnings] == [
        (
            "gpu",
            f"bridge link is plaintext TCP (protocol 'tcp'): anyone who reaches "
            f"tcp/{alpha.address}:{host.bridge_port} on gpu can read and inject its topics; leave "
            "protocol unset for mTLS",
        )
    ]
    assert "in plaintext: anyone who reaches it can read and inject" in bridge_log
    assert not (deployment.state_dir / "tls").exists()
