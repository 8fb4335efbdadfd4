"""`fogros-dist train --on FLEET` with AWS machines: the run's own spec gives them the network the
ranks need. Without a VPN every aws machine joins the deployment's fleet security group (one
region, no other provider); with ``--vpn wireguard`` each machine's own group admits the mesh's
UDP port from the robot's address only. Refusals are one line, before anything exists.

Provisioning runs the real AWSProvider against moto_server (test/providers/aws's fixtures) with
the spec ``fleet_spec`` made, and what moto holds is listed with plain boto3. The whole
`train --on` run cannot go further against moto: its instances run nothing, so no SSH connection
(and no agent, no rendezvous) ever starts; that half is test_fleet_ssh.py's, on OpenSSH hosts.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError
from fogros_dist.machines import Local, Machine, SSHHost
from fogros_dist.net.wireguard import MeshMachine, MeshPlan, default_listen_port
from fogros_dist.providers.aws.ec2 import fleet_group_name
from fogros_dist.providers.aws.provider import AWSProvider, LaunchedInstance
from fogros_dist.spec import DeploymentSpec, Host, MachineSpec
from fogros_dist.train.fleet_mesh import check_vpn, fleet_address, mesh_endpoint
from fogros_dist.train.fleet_run import fleet_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers" / "aws"))

from aws_test_helpers import ROBOT_CIDR, context, ec2_client, group, host_of, instance_groups, machine, tagged

_AWS_TESTS = Path(__file__).resolve().parents[1] / "providers" / "aws"


def _aws_fixtures() -> Any:
    """test/providers/aws/conftest.py as a module of its own (pytest sees only this directory's
    conftest here): its moto_server, fake credentials and the address-discovery guard."""
    spec = importlib.util.spec_from_file_location("aws_provider_fixtures", _AWS_TESTS / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fixtures = _aws_fixtures()
moto_endpoint = _fixtures.moto_endpoint
aws_env = _fixtures.aws_env
deployment = _fixtures.deployment
no_address_discovery = _fixtures.no_address_discovery

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]
SMALL = ["--scenes", "4", "--eval-scenes", "2", "--epochs", "1"]


def _fleet(name: str, *machines: MachineSpec) -> DeploymentSpec:
    return DeploymentSpec(name=name, machines=machines, nodes=())


def _aws(name: str, **options: Any) -> MachineSpec:
    return machine(name=name, instance_type="t3.micro", **options)


def _spec(fleet: DeploymentSpec, vpn: str, tmp_path: Path) -> DeploymentSpec:
    placeholder = tmp_path / "fleet.txt"
    placeholder.write_text("training run\n")
    return fleet_spec(fleet, placeholder=placeholder, name=f"{fleet.name}-train", vpn=vpn)


def _options(spec: DeploymentSpec, name: str) -> dict[str, Any]:
    return dict(spec.machine(name).options)


# -- fleet_spec: which options the run sets ------------------------------------------------------


def test_without_a_vpn_aws_machines_join_the_fleet_group_and_others_are_untouched(tmp_path: Path) -> None:
    ssh = SSHHost("lab", "10.0.0.9", user="me")
    local = Local("here")
    fleet = _fleet("mixed", _aws("head"), _aws("worker", fleet_group=True), ssh, local)
    spec = _spec(fleet, "none", tmp_path)

    assert spec.name == "mixed-train"
    for name in ("head", "worker"):
        options = _options(spec, name)
        assert options["fleet_group"] is True
        assert "udp_ports" not in options
        # Everything the file said is kept.
        assert {k: v for k, v in options.items() if k != "fleet_group"} == {
            k: v for k, v in dict(fleet.machine(name).options).items() if k != "fleet_group"
        }
    assert spec.machine("lab") == ssh
    assert spec.machine("here") == local
    assert [n.machine for n in spec.nodes] == ["head", "worker", "lab", "here"]


def test_with_wireguard_aws_machines_admit_the_mesh_port_the_mesh_listens_on(tmp_path: Path) -> None:
    ssh = SSHHost("lab", "10.0.0.9")
    fleet = _fleet("wg", _aws("head"), _aws("worker", udp_ports="5000"), ssh)
    spec = _spec(fleet, "wireguard", tmp_path)
    port = default_listen_port("wg-train")

    assert _options(spec, "head")["udp_ports"] == str(port)
    assert _options(spec, "worker")["udp_ports"] == f"5000,{port}"  # the file's own port stays
    assert all("fleet_group" not in _options(spec, name) for name in ("head", "worker"))
    assert spec.machine("lab") == ssh
    # The port FleetMesh's plan listens on: it plans the mesh of the spec's own deployment name.
    plan = MeshPlan.create(
        spec.name,
        [
            MeshMachine(name="head", endpoint="172.31.0.10"),
            MeshMachine(name="worker", endpoint="172.31.0.11"),
        ],
    )
    assert plan.for_host("head").listen_port == port


# -- refusals: one line, naming the machines and the fix ------------------------------------------


@pytest.mark.parametrize("value", [False, "false"])
def test_fleet_group_false_without_a_vpn_is_one_line(tmp_path: Path, value: object) -> None:
    fleet = _fleet("nogroup", _aws("head"), _aws("worker", fleet_group=value))
    with pytest.raises(ConfigError) as err:
        _spec(fleet, "none", tmp_path)
    assert str(err.value) == (
        "machine 'worker' sets fleet_group = false, but with --vpn none its ranks reach the others "
        "only through the deployment's fleet security group: remove fleet_group from it, or use "
        "--vpn wireguard"
    )
    # With the mesh the group is not needed, so the file may leave it off.
    spec = _spec(fleet, "wireguard", tmp_path)
    assert _options(spec, "worker")["fleet_group"] == value


def test_aws_machines_in_two_regions_without_a_vpn_are_one_line() -> None:
    fleet = _fleet("regions", _aws("head", region="us-west-2"), _aws("worker", region="us-east-1"))
    with pytest.raises(ConfigError) as err:
        check_vpn(fleet, "none")
    assert str(err.value) == (
        "--vpn none: aws machines head (us-west-2), worker (us-east-1) are in different regions, and "
        "the fleet's security group admits machines of one region only: put them in one region, or "
        "use --vpn wireguard"
    )
    check_vpn(fleet, "wireguard")  # the mesh crosses regions


def test_the_profiles_default_region_counts_as_a_region_of_its_own() -> None:
    fleet = _fleet("default", _aws("head", region=None), _aws("worker", region="us-west-2"))
    with pytest.raises(ConfigError) as err:
        check_vpn(fleet, "none")
    assert str(err.value).startswith(
        "--vpn none: aws machines head (the default region), worker (us-west-2) are in different regions"
    )
    check_vpn(_fleet("same", _aws("head", region=None), _aws("worker", region=None)), "none")
    check_vpn(_fleet("same", _aws("head"), _aws("worker")), "none")


def test_aws_machines_of_two_profiles_without_a_vpn_are_one_line() -> None:
    fleet = _fleet("accounts", _aws("head", profile="lab"), _aws("worker"))
    with pytest.raises(ConfigError) as err:
        check_vpn(fleet, "none")
    assert str(err.value) == (
        "--vpn none: aws machines head (lab), worker (the default profile) use different AWS profiles, "
        "which may be different accounts, and the fleet's security group lives in one: give them one "
        "profile, or use --vpn wireguard"
    )
    check_vpn(fleet, "wireguard")  # the mesh crosses accounts
    check_vpn(_fleet("one", _aws("head", profile="lab"), _aws("worker", profile="lab")), "none")


def test_aws_machines_mixed_with_ssh_ones_without_a_vpn_are_one_line() -> None:
    fleet = _fleet("hybrid", _aws("head"), SSHHost("lab", "10.0.0.9"), _aws("worker"))
    with pytest.raises(ConfigError) as err:
        check_vpn(fleet, "none")
    assert str(err.value) == (
        "--vpn none: fleet 'hybrid' mixes aws machines (head, worker) with lab (ssh), and they share no "
        "private network: use --vpn wireguard"
    )
    check_vpn(fleet, "wireguard")
    check_vpn(_fleet("lan", SSHHost("a", "10.0.0.8"), SSHHost("b", "10.0.0.9")), "none")


def test_the_local_checks_stay() -> None:
    with pytest.raises(ConfigError, match=r"^--vpn wireguard: here is a Local machine"):
        check_vpn(_fleet("loc", Local("here"), _aws("head")), "wireguard")
    with pytest.raises(ConfigError, match=r"^--vpn 'tinc' is unknown"):
        check_vpn(_fleet("loc", _aws("head")), "tinc")


@pytest.mark.parametrize(
    ("value", "bad"), [("0", "0"), ("70000", "70000"), ("51820,x", "x"), ("51820,", ""), (True, None)]
)
def test_a_bad_udp_ports_value_is_one_line(value: object, bad: str | None) -> None:
    with pytest.raises(ConfigError) as err:
        AWSProvider().validate(_aws("gpu", udp_ports=value))
    if bad is None:
        assert str(err.value) == f"machine 'gpu': option udp_ports must be text, got {value!r}: quote it"
    else:
        assert str(err.value) == (
            f"machine 'gpu': option udp_ports has {bad!r}, which is not a port: use comma-separated "
            "whole numbers in 1..65535, e.g. '51820'"
        )


def _fleet_file(path: Path, name: str, machines: dict[str, dict[str, str | bool]]) -> Path:
    lines = [f'name = "{name}"']
    for machine_name, options in machines.items():
        lines += ["[[machines]]", f'name = "{machine_name}"', 'provider = "aws"', "[machines.options]"]
        lines += [
            f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}"
            for key, value in options.items()
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("worker", "needle"),
    [
        ({"region": "us-east-1"}, "--vpn none: aws machines head (us-west-2), worker (us-east-1)"),
        ({"fleet_group": False}, "machine 'worker' sets fleet_group = false"),
    ],
)
def test_train_refuses_a_fleet_with_no_network_before_anything_exists(
    aws_env: dict[str, str], tmp_path: Path, worker: dict[str, str | bool], needle: str
) -> None:
    pytest.importorskip("torch")
    base: dict[str, str | bool] = {
        "region": "us-west-2",
        "robot_cidr": ROBOT_CIDR,
        "instance_type": "t3.micro",
    }
    name = f"refused{os.getpid()}{len(needle)}"
    fleet = _fleet_file(tmp_path / "fleet.toml", name, {"head": base, "worker": {**base, **worker}})
    done = subprocess.run(
        [*CLI, "train", "grasp", "--on", str(fleet), *SMALL],
        env=dict(aws_env, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode != 0
    # The run's banner, then the one error line.
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"train: grasp on fleet {name!r}")
    assert lines[1].startswith(f"fogros-dist: error: {needle}")
    assert lines[1].endswith("or use --vpn wireguard")
    assert tagged(ec2_client(), f"{name}-train") == {}
    assert StateStore(Path(aws_env["FOGROS_DIST_HOME"])).names() == []


# -- provisioning the spec through the real AWSProvider against moto -------------------------------


def _rules(group: dict[str, Any]) -> list[tuple[str, int, int, tuple[str, ...]]]:
    return sorted(
        (
            p["IpProtocol"],
            p.get("FromPort", -1),
            p.get("ToPort", -1),
            tuple(
                sorted(
                    [r["CidrIp"] for r in p.get("IpRanges", [])]
                    + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
                )
            ),
        )
        for p in group["IpPermissions"]
    )


def _launch(spec: DeploymentSpec, tmp_path: Path) -> list[LaunchedInstance]:
    """Every machine of ``spec`` launched as the engine's create does (the EC2 half)."""
    provider = AWSProvider()
    return [provider.launch(m, context(tmp_path, spec.name)) for m in spec.machines]


def _release(launched: list[LaunchedInstance]) -> None:
    provider = AWSProvider()
    for one in launched:
        provider.terminate(host_of(one))


def test_a_fleet_without_a_vpn_trains_inside_one_fleet_group(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    spec = _spec(_fleet(deployment, _aws("head"), _aws("worker")), "none", tmp_path)
    launched = _launch(spec, tmp_path)

    fleet = group(client, fleet_group_name(spec.name))
    assert fleet is not None
    # Its only rule: every protocol (gloo's ports, the c10d store on bridge port + 1) from itself.
    (rule,) = fleet["IpPermissions"]
    assert rule["IpProtocol"] == "-1"
    assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [fleet["GroupId"]]
    assert not rule.get("IpRanges")
    assert not rule.get("Ipv6Ranges")
    assert not rule.get("PrefixListIds")
    for one in launched:
        own = group(client, f"fogros_dist-{spec.name}-{one.ref.machine}")
        assert own is not None
        assert _rules(own) == [("tcp", 22, 22, (ROBOT_CIDR,)), ("tcp", 7447, 7447, (ROBOT_CIDR,))]
        assert instance_groups(client, one.instance_id) == {own["GroupId"], fleet["GroupId"]}

    _release(launched)
    assert tagged(client, spec.name) == {}


def test_a_fleet_on_wireguard_admits_the_mesh_port_from_the_robot_only(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    spec = _spec(_fleet(deployment, _aws("head"), _aws("worker")), "wireguard", tmp_path)
    port = default_listen_port(spec.name)
    launched = _launch(spec, tmp_path)

    assert group(client, fleet_group_name(spec.name)) is None
    for one in launched:
        own = group(client, f"fogros_dist-{spec.name}-{one.ref.machine}")
        assert own is not None
        assert _rules(own) == [
            ("tcp", 22, 22, (ROBOT_CIDR,)),
            ("tcp", 7447, 7447, (ROBOT_CIDR,)),
            ("udp", port, port, (ROBOT_CIDR,)),
        ]
        assert instance_groups(client, one.instance_id) == {own["GroupId"]}
    every_range = [
        r.get("CidrIp", r.get("CidrIpv6"))
        for g in client.describe_security_groups(
            Filters=[{"Name": "tag:fogros_dist:deployment", "Values": [spec.name]}]
        )["SecurityGroups"]
        for p in g["IpPermissions"]
        for r in p.get("IpRanges", []) + p.get("Ipv6Ranges", [])
    ]
    assert every_range
    assert not {"0.0.0.0/0", "::/0"} & set(every_range)

    _release(launched)
    assert tagged(client, spec.name) == {}


def test_the_mesh_port_is_reconciled_like_the_tcp_rules(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    client = ec2_client()
    provider = AWSProvider()
    name = f"{deployment}-train"
    own_name = f"fogros_dist-{name}-head"
    peers = "198.51.100.0/24"
    first = provider.launch(_aws("head", udp_ports="51820"), context(tmp_path, name))
    own = group(client, own_name)
    assert own is not None
    # Someone opened a UDP range to the internet by hand; the next up takes it away again.
    client.authorize_security_group_ingress(
        GroupId=own["GroupId"],
        IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    # The same machine again, its mesh on another port, peers named in allowed_cidr: reused,
    # its group made exactly that.
    again = provider.launch(
        _aws("head", udp_ports="51999", allowed_cidr=f"{ROBOT_CIDR},{peers}"), context(tmp_path, name)
    )
    assert again.reused
    assert again.instance_id == first.instance_id
    own = group(client, own_name)
    assert own is not None
    both = tuple(sorted((ROBOT_CIDR, peers)))
    assert _rules(own) == [("tcp", 22, 22, both), ("tcp", 7447, 7447, both), ("udp", 51999, 51999, both)]
    # And without a mesh (the same fleet trained with --vpn none) no UDP port is left open.
    provider.launch(_aws("head"), context(tmp_path, name))
    own = group(client, own_name)
    assert own is not None
    assert _rules(own) == [("tcp", 22, 22, (ROBOT_CIDR,)), ("tcp", 7447, 7447, (ROBOT_CIDR,))]

    provider.terminate(host_of(again))
    assert tagged(client, name) == {}


def test_the_machines_named_in_the_spec_are_what_machine_options_say(tmp_path: Path) -> None:
    """The spec fleet_spec hands the engine parses as the provider will parse it."""
    from fogros_dist.providers.aws.config import parse_options

    none = _spec(_fleet("p", _aws("head", udp_ports=5000)), "none", tmp_path)
    wg = _spec(_fleet("p", _aws("head", udp_ports=5000)), "wireguard", tmp_path)
    assert parse_options(none.machine("head")).fleet_group is True
    assert parse_options(none.machine("head")).udp_ports == (5000,)
    assert parse_options(wg.machine("head")).udp_ports == tuple(
        sorted((5000, default_listen_port("p-train")))
    )
    assert parse_options(Machine("x", provider="aws", udp_ports="9,9, 7")).udp_ports == (7, 9)


def test_the_mesh_reaches_an_ec2_machine_on_its_public_address_and_others_where_ssh_reached_them() -> None:
    behind_nat = (("FOGROS_SSH_SERVER_ADDRESS", "172.31.5.9"),)
    ec2 = Host(
        machine="gpu",
        provider="aws",
        address="54.1.2.3",
        workdir="/w",
        resource_id="i-1",
        bridge_port=7447,
        env=behind_nat,
    )
    lab = Host(
        machine="lab",
        provider="ssh",
        address="lab.example",
        workdir="/w",
        resource_id="ssh:lab",
        bridge_port=7447,
        env=(("FOGROS_SSH_SERVER_ADDRESS", "10.0.0.7"),),
    )
    # The private address is what a peer in another network cannot reach.
    assert mesh_endpoint(ec2) == "54.1.2.3"
    assert mesh_endpoint(lab) == "10.0.0.7"
    # Without a mesh the ranks of one VPC use the private one (the fleet group admits it).
    assert fleet_address(ec2) == "172.31.5.9"
