"""`fogros-dist ssh` input errors, each one line: unknown deployment, a Local machine, bad words."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_test_helpers import Run

from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.spec import DeploymentSpec, Host, MachineSpec


def _record_local(home: Path) -> Host:
    now = time.time()
    host = Host(
        machine="gpu",
        provider="local",
        address="127.0.0.1",
        workdir=str(home / "deployments" / "here" / "machines" / "gpu"),
        resource_id="local:here/gpu",
        bridge_port=7447,
        env=(("ROS_DOMAIN_ID", "140"),),
    )
    spec = DeploymentSpec(name="here", machines=(MachineSpec(name="gpu"),), nodes=())
    StateStore(home).create(
        DeploymentState(
            spec=spec, status="running", created_at=now, updated_at=now, robot_domain_id=0, hosts=(host,)
        )
    )
    return host


def test_unknown_deployment_is_one_line(fogros: Run, cli_env: dict[str, str]) -> None:
    done = fogros("ssh", "nowhere", "--", "true")
    assert done.returncode == 1
    assert done.stderr == (
        f"fogros-dist: error: no deployment named 'nowhere' is recorded in {cli_env['FOGROS_DIST_HOME']} "
        "(known: none)\n"
    )


def test_a_local_machine_is_refused_naming_its_directory(fogros: Run, cli_env: dict[str, str]) -> None:
    host = _record_local(Path(cli_env["FOGROS_DIST_HOME"]))
    for args in (("here",), ("here", "gpu")):
        done = fogros("ssh", *args)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
    assert lines[0] == (
        "fogros-dist: error: machine 'gpu' of deployment 'here' runs on this robot (provider local): "
        f"there is nothing to SSH to; its files are in {host.workdir}"
    )
    unnamed = fogros("ssh", "here")
    assert unnamed.stderr == (
        "fogros-dist: error: deployment 'here' has no remote machine to SSH to (machines: gpu)\n"
    )


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ((), "ssh needs a deployment: fogros-dist ssh DEPLOYMENT [MACHINE] [-- COMMAND...]"),
        (
            ("here", "gpu", "uptime"),
            "ssh takes DEPLOYMENT [MACHINE], got 'here gpu uptime': put the command after '--', "
            "e.g. fogros-dist ssh here -- nvidia-smi",
        ),
    ],
)
def test_malformed_words_are_named(fogros: Run, words: tuple[str, ...], message: str) -> None:
    done = fogros("ssh", *words)
    assert (done.returncode, done.stderr) == (1, f"fogros-dist: error: {message}\n")
