"""`fogros-dist list`, `down`, `down --all --region` and `image` for AWS machines.

Most verbs run in this process (``main(argv)``, output captured): a fresh Python process spends
about 1.5 s loading boto3 and EC2's service model, which the test budget cannot pay per call. The
sweep runs as a real subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aws_test_helpers import context, ec2_client, machine, tagged

from fogros_dist.cli.main import main
from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.providers.aws.images import find_image
from fogros_dist.providers.aws.provider import AWSProvider, LaunchedInstance
from fogros_dist.spec import DeploymentSpec, Host, MachineSpec, NodeSpec

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]


def fogros(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess with ``env``."""
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI in this process (environment: os.environ, set up by aws_env)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def record(
    deployment: str, spec_machine: MachineSpec, launched: LaunchedInstance, *, age_s: float = 0
) -> None:
    """Record the deployment as `up` would have once the machine was created (no supervisor)."""
    host = Host(
        machine=spec_machine.name,
        provider="aws",
        address=launched.public_ip,
        workdir=f"/home/ubuntu/.fogros_dist/deployments/{deployment}/{spec_machine.name}",
        resource_id=launched.ref.to_resource_id(),
        bridge_port=7447,
    )
    node = NodeSpec(
        name="edges", package="fogros_dist", executable="edge_detector", machine=spec_machine.name
    )
    spec = DeploymentSpec(name=deployment, machines=(spec_machine,), nodes=(node,))
    created = time.time() - age_s
    StateStore().create(
        DeploymentState(
            spec=spec,
            status="running",
            created_at=created,
            updated_at=created,
            robot_domain_id=0,
            hosts=(host,),
        )
    )


def test_list_shows_cost_and_down_removes_everything(
    aws_env: dict[str, str],
    tmp_path: Path,
    deployment: str,
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    spec_machine = machine()
    launched = AWSProvider().launch(spec_machine, context(tmp_path, deployment))
    record(deployment, spec_machine, launched, age_s=3600)

    rows = json.loads(cli("list", "--json").stdout)
    (row,) = rows
    assert row["name"] == deployment
    assert row["machines"] == [f"gpu:aws@{launched.public_ip}"]
    # One hour of g5.xlarge at the table's on-demand price, with the table's date.
    assert row["cost"] == "$1.01"
    assert "on-demand $1.006/h as of" in row["cost_notes"][0]
    human = cli("list").stdout
    assert "COST" in human.splitlines()[0]
    assert "$1.01" in human
    assert "cost: gpu: on-demand $1.006/h as of" in human

    result = cli("down", deployment)
    assert result.returncode == 0, result.stderr
    assert f"deployment {deployment} is down" in result.stdout
    assert tagged(ec2_client(), deployment) == {}
    assert not launched.key_file.exists()
    assert cli("list", "--region", "us-west-2").stdout.strip() == "no deployments"


def test_spot_cost_is_an_upper_bound(
    aws_env: dict[str, str],
    tmp_path: Path,
    deployment: str,
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    spec_machine = machine(spot=True, instance_type="t3.micro")
    launched = AWSProvider().launch(spec_machine, context(tmp_path, deployment))
    record(deployment, spec_machine, launched, age_s=7200)
    try:
        (row,) = json.loads(cli("list", "--json").stdout)
        assert row["cost"] == "<=$0.02"
        assert "spot: upper bound" in row["cost_notes"][0]
    finally:
        assert cli("down", deployment).returncode == 0


def test_down_all_region_sweeps_untracked_resources(
    aws_env: dict[str, str], tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    region = "eu-west-3"  # a region of its own: the sweep removes every tagged resource there
    provider = AWSProvider()
    first = provider.launch(machine(region=region), context(tmp_path, "orphan-a"))
    provider.launch(
        machine(name="cpu", region=region, spot=True, instance_type="t3.micro"), context(tmp_path, "orphan-b")
    )
    client = ec2_client(region)
    assert set(tagged(client)) >= {"instances", "security_groups", "key_pairs"}

    listed = cli("list", "--region", region)
    assert listed.returncode == 0, listed.stderr
    assert "orphan-a" in listed.stdout
    assert "untracked (running" in listed.stdout
    assert f"gpu:aws/{region}@{first.public_ip}" in listed.stdout

    # No local state at all: --all still finds them by their tags.
    result = fogros(aws_env, "down", "--all", "--region", region, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"region {region}: removed 2 instance(s), 2 security group(s), 2 key pair(s)" in result.stdout
    assert tagged(client) == {}
    assert not first.key_file.exists()
    assert cli("list", "--region", region).stdout.strip() == "no deployments"


def test_region_without_all_is_refused(
    aws_env: dict[str, str], cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = cli("down", "x", "--region", "us-west-2")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "fogros-dist: error: --region only goes with --all "
        "(it removes every tagged resource there): add --all"
    )


def test_image_is_made_recorded_and_found_by_name(
    aws_env: dict[str, str],
    tmp_path: Path,
    deployment: str,
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    spec_machine = machine()
    launched = AWSProvider().launch(spec_machine, context(tmp_path, deployment))
    record(deployment, spec_machine, launched)
    name = f"{deployment}-ami"
    try:
        result = cli("image", deployment, "gpu", "--name", name)
        assert result.returncode == 0, result.stderr
        recorded = find_image(name, region="us-west-2")
        assert recorded is not None
        assert recorded.source == f"{deployment}/gpu"
        assert result.stdout.strip() == (
            f"image {recorded.image_id} ({name}) is available in us-west-2: use ami_name = {name!r}"
        )
        (ami,) = ec2_client().describe_images(ImageIds=[recorded.image_id])["Images"]
        tags = {t["Key"]: t["Value"] for t in ami["Tags"]}
        assert tags["fogros_dist:image-of"] == f"{deployment}/gpu"
        assert "fogros_dist:deployment" not in tags  # `down --all` never deletes images

        # A new machine starts from it by name: from the record, or from the account ("self").
        from aws_test_helpers import Progress

        for options in ({"ami_name": name}, {"ami_name": name, "ami_owner": "self"}):
            progress = Progress()
            AWSProvider().launch(
                machine(name="again", ami=None, **options), context(tmp_path, deployment, progress)
            )
            assert recorded.image_id in progress.events[0][1]
    finally:
        assert cli("down", deployment).returncode == 0
        AWSProvider().release(
            type(launched.ref)(region="us-west-2", instance_id="", deployment=deployment, machine="again")
        )


def test_image_of_a_local_machine_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    home = tmp_path / "state"
    monkeypatch.setenv("FOGROS_DIST_HOME", str(home))
    spec = DeploymentSpec(
        name="loc",
        machines=(MachineSpec(name="m"),),
        nodes=(NodeSpec(name="n", package="p", executable="e", machine="m"),),
    )
    host = Host(
        machine="m", provider="local", address="127.0.0.1", workdir="/", resource_id="l", bridge_port=1
    )
    StateStore().create(
        DeploymentState(
            spec=spec, status="running", created_at=0, updated_at=0, robot_domain_id=0, hosts=(host,)
        )
    )
    result = cli("image", "loc", "m")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "fogros-dist: error: machine 'm': provider 'local' cannot make images: "
        "image a machine of provider 'aws'"
    )
