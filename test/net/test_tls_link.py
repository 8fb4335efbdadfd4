"""A Local deployment over mTLS end to end (``protocol = "tls"``): the deployment's own CA, private
keys 0600, the machine bridge on loopback only, and strangers at its port kept out while real
traffic flows (with a session holding the deployment's credentials as the control)."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

from e2e_helpers import edge_deployment
from tls_strangers import STRANGERS, assert_kept_out, assert_let_in, visit_link

from fogros_dist.deploy.engine import Deployment, Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.net.tls import BridgeCredentials
from fogros_dist.spec import BridgeSpec, MachineSpec


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_local_deployment_over_mtls_answers_and_keeps_strangers_out(
    tmp_path: Path, robot_domain: int
) -> None:
    spec = dataclasses.replace(
        edge_deployment("tls-local", MachineSpec(name="gpu")), bridge=BridgeSpec(protocol="tls")
    )
    stages: list[Stage] = []
    deployment = Deployment(
        spec, store=StateStore(tmp_path / "home"), reporter=stages.append, robot_domain_id=robot_domain
    )
    deployment.up()
    try:
        host = deployment.state.hosts[0]
        state_dir = deployment.state_dir
        machine_spec = json.loads((state_dir / "bridge-gpu.json").read_text())
        robot_spec = json.loads((state_dir / "bridge-robot.json").read_text())
        assert machine_spec["listen"] == [f"tls/127.0.0.1:{host.bridge_port}"]
        assert robot_spec["connect"] == [f"tls/127.0.0.1:{host.bridge_port}"]
        robot = BridgeCredentials(directory=Path(robot_spec["bridge"]["tls_dir"]))
        machine = BridgeCredentials(directory=Path(machine_spec["bridge"]["tls_dir"]))
        assert (robot.directory, machine.directory) == (
            state_dir / "tls/robot",
            state_dir / "tls/machines/gpu",
        )
        for side in (robot, machine):
            assert _mode(side.private_key) == 0o600
            assert _mode(side.directory) == 0o700
        assert _mode(state_dir / "tls") == 0o700
        assert robot.ca_certificate.read_bytes() == machine.ca_certificate.read_bytes()
        bridged = next(s.message for s in stages if s.stage == "bridged")
        assert bridged.endswith("over Zenoh (mTLS)"), bridged
        assert not [s for s in stages if s.stage == "warning"]

        visits = visit_link(
            kinds=(*STRANGERS, "member"),
            deployment=spec.name,
            machine="gpu",
            host="127.0.0.1",
            port=host.bridge_port,
            deployment_ca=robot.ca_certificate,
            member=robot,
            workdir=tmp_path,
            robot_domain=robot_domain,
            machine_domain=int(dict(host.env)["ROS_DOMAIN_ID"]),
        )
    finally:
        deployment.down()
    for visit in visits[:-1]:
        assert_kept_out(visit)
    assert_let_in(visits[-1], deployment=spec.name, machine="gpu")
