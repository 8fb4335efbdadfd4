"""A training fleet's own flat network: the WireGuard mesh (``--vpn wireguard``).

gloo and NCCL open a full mesh of TCP connections between ranks, so machines that do not share a
network (two labs, a lab and a cloud) cannot train together on their own addresses. With the
mesh, each machine gets one address of the deployment's WireGuard network
(:mod:`fogros_dist.net.wireguard`: keys made on the robot, the UDP port admitted only from the
fleet's own machines), brought up over the machine's verified SSH connection
(:mod:`fogros_dist.net.wireguard_host`) once every machine is ready, and the rendezvous is the
head's mesh address, so every rank's traffic rides the mesh (``ip route get`` on each machine
then names the WireGuard interface for gloo). It is torn down before the deployment is.

Local machines are refused: they share this host's network already, and one host cannot hold two
ends of the mesh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fogros_dist.deploy.engine import Deployment
from fogros_dist.errors import ConfigError, FogError
from fogros_dist.net.wireguard import MeshMachine, MeshPlan
from fogros_dist.net.wireguard_host import MESH_INTERFACE_ENV, RootRun, bring_up, tear_down
from fogros_dist.spec import DeploymentSpec, Host

__all__ = ["VPN_CHOICES", "FleetMesh", "check_vpn", "fleet_address", "mesh_endpoint"]

VPN_CHOICES = ("none", "wireguard")


def check_vpn(fleet: DeploymentSpec, vpn: str) -> None:
    """Refuse a VPN that cannot be, or a fleet whose machines share no network without one,
    before anything is created (one ConfigError line)."""
    if vpn not in VPN_CHOICES:
        msg = f"--vpn {vpn!r} is unknown: use one of {', '.join(VPN_CHOICES)}"
        raise ConfigError(msg)
    local = [m.name for m in fleet.machines if m.provider == "local"]
    if vpn == "wireguard" and local:
        what = "is a Local machine" if len(local) == 1 else "are Local machines"
        msg = (
            f"--vpn wireguard: {', '.join(local)} {what}, which share this host's network already: "
            "use the mesh for remote machines"
        )
        raise ConfigError(msg)
    if vpn == "none":
        _check_one_network(fleet)


def _check_one_network(fleet: DeploymentSpec) -> None:
    """Without a VPN, a fleet's aws machines reach each other only through the deployment's fleet
    security group, which lives in one region's default VPC of one account: no machine of another
    provider, region or profile can be a member."""
    aws = [m for m in fleet.machines if m.provider == "aws"]
    if not aws:
        return
    others = [m for m in fleet.machines if m.provider not in ("aws", "local")]
    if others:
        named = ", ".join(f"{m.name} ({m.provider})" for m in others)
        msg = (
            f"--vpn none: fleet {fleet.name!r} mixes aws machines ({', '.join(m.name for m in aws)}) "
            f"with {named}, and they share no private network: use --vpn wireguard"
        )
        raise ConfigError(msg)
    # "" is the profile's default region: compared as written, since which region that is is
    # known only once a session asks the profile.
    regions = {m.name: str(m.option("region", "")) for m in aws}
    if len(set(regions.values())) > 1:
        named = ", ".join(f"{name} ({region or 'the default region'})" for name, region in regions.items())
        msg = (
            f"--vpn none: aws machines {named} are in different regions, and the fleet's security "
            "group admits machines of one region only: put them in one region, or use --vpn wireguard"
        )
        raise ConfigError(msg)
    # Two profiles may be two accounts, whose VPCs a security group cannot span. Compared as
    # written too: which account a profile is, only STS knows, and nothing is asked before `up`.
    profiles = {m.name: str(m.option("profile", "")) for m in aws}
    if len(set(profiles.values())) > 1:
        named = ", ".join(
            f"{name} ({profile or 'the default profile'})" for name, profile in profiles.items()
        )
        msg = (
            f"--vpn none: aws machines {named} use different AWS profiles, which may be different "
            "accounts, and the fleet's security group lives in one: give them one profile, or use "
            "--vpn wireguard"
        )
        raise ConfigError(msg)


def _runner(host: Host, run_command: Callable[..., tuple[int, str, str]]) -> RootRun:
    def run(argv: list[str], *, stdin: str | None = None) -> tuple[int, str, str]:
        return run_command(host, argv, stdin=stdin)

    return run


class FleetMesh:
    """The mesh of one fleet's deployment (after ``deployment.up()``)."""

    def __init__(self, deployment: Deployment, spec: DeploymentSpec, echo: Callable[[str], None]) -> None:
        self._deployment = deployment
        self._spec = spec
        self._echo = echo
        self._up: list[tuple[str, RootRun, str]] = []

    def up(self) -> dict[str, str]:
        """Bring the mesh up on every machine; each machine's mesh address, by machine.

        Raises:
            ConfigError: a machine's provider cannot run commands there.
            FogError: a machine could not bring its part up (what was up is torn down first).
        """
        runs: dict[str, tuple[Host, RootRun]] = {}
        for machine in self._spec.machines:
            host, provider = self._deployment.provider_of(machine.name)
            run_command = getattr(provider, "run_command", None)
            if run_command is None:
                msg = (
                    f"--vpn wireguard: provider {host.provider!r} of machine {machine.name!r} "
                    "cannot run commands there"
                )
                raise ConfigError(msg)
            runs[machine.name] = (host, _runner(host, run_command))
        plan = MeshPlan.create(
            self._spec.name,
            [MeshMachine(name=name, endpoint=mesh_endpoint(host)) for name, (host, _run) in runs.items()],
        )
        try:
            for name, (_host, run) in runs.items():
                mesh = plan.for_host(name)
                # Recorded first: if this process dies from here on, `down` still removes it
                # (the remote providers' terminate reads it: remote/machine.py).
                self._deployment.record_host_env(name, MESH_INTERFACE_ENV, mesh.interface)
                made = bring_up(run, mesh, host=name)
                self._up.append((name, run, mesh.interface))
                self._echo(
                    f"train: mesh {name}: {mesh.address.ip} on {mesh.interface} ({made.mode}, "
                    f"{made.firewall}, UDP {mesh.listen_port} from {len(mesh.peer_endpoints)} peer(s) only)"
                )
        except BaseException:
            self.down()
            raise
        return {name: str(plan.member(name).address) for name in runs}

    def down(self) -> None:
        """Tear every machine's part down (each tried, whatever the others did)."""
        while self._up:
            name, run, interface = self._up.pop()
            with contextlib.suppress(FogError):
                tear_down(run, interface, host=name, check=False)
                self._echo(f"train: mesh {name}: {interface} removed")
                self._deployment.record_host_env(name, MESH_INTERFACE_ENV, "")


def mesh_endpoint(host: Host) -> str:
    """Where the mesh's other machines send ``host``'s WireGuard packets: an EC2 machine's public
    address (its end of the SSH connection is the private one, which no machine outside its VPC
    reaches), else :func:`fleet_address`."""
    return host.address if host.provider == "aws" else fleet_address(host)


def fleet_address(host: Host) -> str:
    """The address the fleet's other machines reach ``host`` on outside any mesh: the host's end
    of the robot's SSH connection (on EC2 the private address behind the public one)."""
    return dict(host.env).get("FOGROS_SSH_SERVER_ADDRESS", "") or host.address
