"""The fleet's WireGuard mesh: the plan (keys, addresses, configs, bad input) and a real mesh
between two namespaces on different subnets joined only through a router (test/net/wg_lab.py)."""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from wg_lab import LabNode, WanLab, kernel_wireguard, open_wan_lab, wan_lab_unavailable

from fogros_dist.errors import ConfigError
from fogros_dist.net.wireguard import MESH_RANGE, MeshMachine, MeshPlan, default_listen_port, interface_name
from fogros_dist.net.wireguard_host import (
    MeshDown,
    MeshUp,
    WireGuardError,
    bring_up,
    firewall_counters,
    firewall_names,
    tear_down,
)

# -- the plan ------------------------------------------------------------------------------------

_MACHINES = [
    MeshMachine(name="robot", endpoint="192.0.2.10"),
    MeshMachine(name="gpu-lab", endpoint="198.51.100.7"),
    MeshMachine(name="gpu-cloud", endpoint="2001:db8::5"),
]


def _parse(config: str) -> list[tuple[str, dict[str, str]]]:
    """wg's configuration format: [Section] headers, ``Key = Value`` lines, ``#`` comments."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1], {}))
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a wg configuration line: {raw!r}"
        assert sections, f"a key before any section: {raw!r}"
        assert key.strip() not in sections[-1][1], f"key given twice: {raw!r}"
        sections[-1][1][key.strip()] = value.strip()
    return sections


def test_keys_are_x25519_pairs_as_wireguard_writes_them() -> None:
    plan = MeshPlan.create("keys", _MACHINES)
    assert len({m.private_key for m in plan.members}) == len(plan.members)
    for member in plan.members:
        raw = base64.b64decode(member.private_key, validate=True)
        assert len(raw) == 32
        assert raw[0] & 7 == 0
        assert raw[31] & 0xC0 == 0x40
        public = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
        assert base64.b64encode(public).decode() == member.public_key


def test_keys_are_fresh_per_deployment_plan() -> None:
    first = MeshPlan.create("same-name", _MACHINES)
    second = MeshPlan.create("same-name", _MACHINES)
    assert not {m.private_key for m in first.members} & {m.private_key for m in second.members}
    # ...while the addresses, port and interface names stay those of the deployment.
    assert (first.subnet, first.listen_port) == (second.subnet, second.listen_port)
    assert [m.address for m in first.members] == [m.address for m in second.members]


def test_every_config_parses_and_lists_every_peer_once() -> None:
    plan = MeshPlan.create("configs", _MACHINES)
    for me in plan.members:
        config = plan.config_for(me.name)
        sections = _parse(config)
        assert [name for name, _ in sections] == ["Interface", "Peer", "Peer"]
        interface = sections[0][1]
        assert interface == {"PrivateKey": me.private_key, "ListenPort": str(plan.listen_port)}
        peers = {values["PublicKey"]: values for _, values in sections[1:]}
        others = [m for m in plan.members if m.name != me.name]
        assert set(peers) == {m.public_key for m in others}
        for other in others:
            peer = peers[other.public_key]
            assert peer["AllowedIPs"] == f"{other.address}/32"
            host = f"[{other.endpoint}]" if other.endpoint.version == 6 else str(other.endpoint)
            assert peer["Endpoint"] == f"{host}:{plan.listen_port}"
            assert int(peer["PersistentKeepalive"]) > 0
            # Another machine's private key is never in this machine's config.
            assert other.private_key not in config


def test_addresses_are_one_per_machine_in_the_deployments_subnet() -> None:
    plan = MeshPlan.create("addresses", _MACHINES)
    assert plan.subnet.subnet_of(MESH_RANGE)
    assert plan.subnet.prefixlen == 24
    addresses = [m.address for m in plan.members]
    assert len(set(addresses)) == len(addresses)
    assert all(a in plan.subnet and a not in {plan.subnet.network_address, plan.subnet.broadcast_address}
               for a in addresses)  # fmt: skip
    other = MeshPlan.create("addresses-elsewhere", _MACHINES)
    assert other.subnet != plan.subnet
    assert 1 <= plan.listen_port <= 65535


def test_a_default_subnet_holding_an_endpoint_is_passed_over() -> None:
    taken = MeshPlan.create("crowded", _MACHINES[:1]).subnet
    inside = str(taken.network_address + 9)
    plan = MeshPlan.create("crowded", [*_MACHINES[:1], MeshMachine(name="tailnet", endpoint=inside)])
    assert plan.subnet != taken
    assert ipaddress.ip_address(inside) not in plan.subnet


def test_host_view_holds_only_its_own_key_and_no_repr_shows_a_key() -> None:
    plan = MeshPlan.create("views", _MACHINES)
    host = plan.for_host("gpu-lab")
    assert host.interface == interface_name("views", "gpu-lab")
    assert host.address == ipaddress.IPv4Interface(f"{plan.member('gpu-lab').address}/24")
    assert set(host.peer_endpoints) == {m.endpoint for m in plan.members if m.name != "gpu-lab"}
    assert plan.member("gpu-lab").private_key in host.config
    shown = repr(plan) + repr(host) + str(plan.members)
    for member in plan.members:
        assert member.private_key not in shown
        assert member.public_key in repr(plan)


def test_interface_names_fit_linux_and_differ_per_machine() -> None:
    names = {interface_name("fleet", m) for m in ("a", "b", "c")} | {interface_name("fleet2", "a")}
    assert len(names) == 4
    assert all(len(n) <= 15 and n.startswith("fdwg") and n.isalnum() for n in names)
    assert interface_name("fleet", "a") == interface_name("fleet", "a")


@pytest.mark.parametrize(
    ("machines", "options", "named"),
    [
        ([MeshMachine(name="a", endpoint="10.0.0.1"), MeshMachine(name="a", endpoint="10.0.0.2")], {}, "'a'"),
        ([MeshMachine(name="a", endpoint="")], {}, "no WireGuard endpoint"),
        ([MeshMachine(name="a", endpoint="gpu.lab")], {}, "'gpu.lab' is not an IP address"),
        ([MeshMachine(name="a", endpoint="0.0.0.0")], {}, "0.0.0.0"),
        (
            [MeshMachine(name="a", endpoint="10.0.0.1"), MeshMachine(name="b", endpoint="10.0.0.1")],
            {},
            "10.0.0.1 is also 'a'",
        ),
        ([MeshMachine(name="a", endpoint="10.0.0.1")], {"listen_port": 70000}, "70000 is out of range"),
        ([MeshMachine(name="a", endpoint="10.0.0.1")], {"listen_port": 0}, "port 0 is out of range"),
        (
            [MeshMachine(name="a", endpoint="10.0.0.1")],
            {"subnet": "10.0.0.0/24"},
            "underlay address 10.0.0.1",
        ),
        ([MeshMachine(name="a", endpoint="10.0.0.1")], {"subnet": "8.8.8.0/24"}, "8.8.8.0/24 is not private"),
        ([MeshMachine(name="a", endpoint="10.0.0.1")], {"subnet": "100.64.0.1/24"}, "'100.64.0.1/24'"),
        (
            [MeshMachine(name=n, endpoint=f"10.0.0.{i + 1}") for i, n in enumerate("abc")],
            {"subnet": "100.64.0.0/31"},
            "room for 0 machines",
        ),
        ([], {}, "at least one machine"),
    ],
)
def test_bad_input_is_one_line_naming_it(
    machines: list[MeshMachine], options: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        MeshPlan.create("bad", machines, **options)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_asking_for_a_machine_not_in_the_mesh_names_it() -> None:
    plan = MeshPlan.create("members", _MACHINES)
    with pytest.raises(ConfigError, match="'nope' is not in deployment 'members'"):
        plan.config_for("nope")


# -- a real mesh across a router ------------------------------------------------------------------

_ECHO_PORT = 7000


@pytest.fixture(scope="module")
def lab() -> Iterator[WanLab]:
    why = wan_lab_unavailable()
    if why:
        pytest.skip(f"WireGuard mesh lab: {why}")
    # The port is the plan's: the router passes exactly that UDP port.
    lab = open_wan_lab(port=default_listen_port(_deployment()))
    try:
        yield lab
    finally:
        lab.close()


def _deployment() -> str:
    # One name per test run: interface names, hence wireguard-go's control sockets in the shared
    # /var/run/wireguard, must not meet another run's.
    return f"wgtest-{os.getpid()}"


def _plan(lab: WanLab) -> MeshPlan:
    plan = MeshPlan.create(
        _deployment(),
        [
            MeshMachine(name="lab-a", endpoint=lab.a.address),
            MeshMachine(name="lab-b", endpoint=lab.b.address),
        ],
    )
    assert plan.listen_port == lab.port
    return plan


def _links(node: LabNode) -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", node.netns, "ip", "-o", "link", "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _nft_tables(node: LabNode) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", node.netns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _iptables_chains(node: LabNode) -> str:
    if shutil.which("iptables") is None:
        return ""
    return subprocess.run(
        ["ip", "netns", "exec", node.netns, "iptables", "-w", "-S"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _running(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _firewall_backends() -> list[object]:
    iptables = pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables not installed")
    return ["nftables", pytest.param("iptables", marks=iptables)]


def _up_both(
    lab: WanLab, plan: MeshPlan, firewall: Literal["nftables", "iptables"], state: str
) -> dict[str, MeshUp]:
    ups = {}
    argvs: list[list[str]] = []
    for name, node in (("lab-a", lab.a), ("lab-b", lab.b)):

        def recording(
            argv: list[str], *, stdin: str | None = None, node: LabNode = node
        ) -> tuple[int, str, str]:
            argvs.append(argv)
            return node.run()(argv, stdin=stdin)

        up = bring_up(recording, plan.for_host(name), host=name, firewall=firewall, state_root=state)
        ups[name] = up
        # The private key went on stdin only (argv shows in `ps` and in runners' logs)...
        assert plan.member(name).private_key not in repr(argvs)
        # ...into a file only root may read.
        config = Path(state, up.interface, "wg.conf")
        assert config.stat().st_mode & 0o777 == 0o600
        assert config.parent.stat().st_mode & 0o777 == 0o700
        assert up.firewall == firewall
        assert up.interface in _links(node)
        if up.mode == "userspace":
            assert up.pid is not None
            assert _running(up.pid)
        # `wg` derives the public key from the private key it was given: it is the plan's.
        assert (
            node.run()(["wg", "show", up.interface, "public-key"])[1].strip() == plan.member(name).public_key
        )
        peers = node.run()(["wg", "show", up.interface, "peers"])[1].split()
        assert peers == [p.public_key for p in plan.peers_of(name)]
    return ups


def _assert_nothing_left(node: LabNode, up: MeshUp, down: MeshDown, state: str) -> None:
    assert up.interface not in _links(node)
    table, chain = firewall_names(up.interface)
    assert table not in _nft_tables(node)
    assert chain not in _iptables_chains(node)
    assert down.firewall_removed[:1] == (up.firewall,)
    if up.pid is not None:
        assert down.stopped_pid == up.pid
        assert not _running(up.pid)
    assert not Path(state, up.interface).exists()
    assert not Path(f"/var/run/wireguard/{up.interface}.sock").exists()
    # Idempotent: a second teardown finds nothing and says so.
    again = tear_down(node.run(), up.interface, host="again", state_root=state)
    assert (again.stopped_pid, again.interface_removed, again.firewall_removed) == (None, False, ())


@pytest.mark.netns
@pytest.mark.parametrize("firewall", _firewall_backends())
def test_mesh_joins_two_labs_only_through_wireguard(
    lab: WanLab, firewall: Literal["nftables", "iptables"], tmp_path: Path
) -> None:
    plan = _plan(lab)
    state = str(tmp_path / "state")
    try:
        ups = _up_both(lab, plan, firewall, state)
        before = lab.router_counts()
        lab.start_echo_server(lab.a, _ECHO_PORT)

        # Over the mesh: b reaches a's mesh address, every byte echoed.
        over_mesh = lab.echo(lab.b, str(plan.member("lab-a").address), _ECHO_PORT, rounds=20)
        assert over_mesh["outcome"] == "ok", over_mesh
        # Directly between the underlay addresses: the router drops it (a silent timeout, not a
        # refusal: the server listens there too).
        direct = lab.echo(lab.b, lab.a.address, _ECHO_PORT, timeout=1.5)
        assert direct["outcome"] == "timeout", direct
        after = lab.router_counts()
        assert after["a->b"] > before["a->b"]
        assert after["b->a"] > before["b->a"]
        assert after["dropped"] > before["dropped"]

        # A stranger on the internet: the router passes its UDP to a's mesh port; a's firewall
        # drops every datagram of it and admits the peer's.
        run_a, interface_a = lab.a.run(), ups["lab-a"].interface
        counted = firewall_counters(run_a, interface_a, host="lab-a")
        lab.udp_probe(lab.c, lab.a.address, plan.listen_port, count=7)
        probed = firewall_counters(run_a, interface_a, host="lab-a")
        assert lab.router_counts()["c->a"] - after["c->a"] == 7
        assert probed.dropped - counted.dropped == 7
        assert probed.accepted > 0
        # The peer's endpoint is still b's underlay address (the stranger was never heard).
        endpoints = run_a(["wg", "show", interface_a, "endpoints"])[1]
        assert f"{lab.b.address}:{plan.listen_port}" in endpoints
    finally:
        lab.stop_processes()
        downs = {
            name: tear_down(node.run(), plan.for_host(name).interface, host=name, state_root=state)
            for name, node in (("lab-a", lab.a), ("lab-b", lab.b))
        }
    _assert_nothing_left(lab.a, ups["lab-a"], downs["lab-a"], state)
    _assert_nothing_left(lab.b, ups["lab-b"], downs["lab-b"], state)


@pytest.mark.netns
def test_teardown_of_a_half_gone_mesh_and_a_reused_pid(lab: WanLab, tmp_path: Path) -> None:
    plan = _plan(lab)
    state = str(tmp_path / "state")
    mesh = plan.for_host("lab-a")
    up = bring_up(lab.a.run(), mesh, host="lab-a", state_root=state)
    if up.pid is not None:
        # wireguard-go died (its interface goes with it); the firewall and the PID file stay.
        os.kill(up.pid, signal.SIGKILL)
        # The PID file now names a live process that is not this mesh's wireguard-go.
        bystander = lab.start(lab.a, ["sleep", "60"])
        Path(state, mesh.interface, "wireguard-go.pid").write_text(f"{bystander.pid}\n")
    down = tear_down(lab.a.run(), mesh.interface, host="lab-a", state_root=state)
    assert down.stopped_pid is None
    assert down.firewall_removed == ("nftables",)
    assert firewall_names(mesh.interface)[0] not in _nft_tables(lab.a)
    assert mesh.interface not in _links(lab.a)
    if up.pid is not None:
        assert bystander.poll() is None  # left alone: teardown stops only its own wireguard-go


def _clash(plan: MeshPlan, lab: WanLab, kind: str) -> tuple[list[str], str]:
    """(the `ip` arguments making a host network of ``kind``, how the error line names it)."""
    gateway = lab.a.address.rsplit(".", 1)[0] + ".1"
    if kind == "address":  # as a second LAN or another VPN of the host would hold
        inside = f"{plan.subnet.network_address + 200}/28"
        return ["address", "add", inside, "dev", "lo"], f"address {inside} on lo"
    if kind == "route":  # a network reached through a gateway
        inside = f"{plan.subnet.network_address}/25"
        return ["route", "add", inside, "via", gateway], f"route {inside} via {gateway}"
    # A full-tunnel VPN's catch-all half: the mesh's /24 rightly overrides it.
    return ["route", "add", "0.0.0.0/1", "via", gateway], ""


@pytest.mark.netns
@pytest.mark.parametrize("kind", ["address", "route", "catch-all"])
def test_a_host_network_inside_the_mesh_subnet_stops_bring_up_naming_it(
    lab: WanLab, kind: str, tmp_path: Path
) -> None:
    plan = _plan(lab)
    mesh = plan.for_host("lab-a")
    state = str(tmp_path / "state")
    run = lab.a.run()
    add, named = _clash(plan, lab, kind)
    assert run(["ip", *add])[0] == 0
    try:
        if not named:
            up = bring_up(run, mesh, host="lab-a", state_root=state)
            assert up.interface in _links(lab.a)
            return
        with pytest.raises(WireGuardError) as caught:
            bring_up(run, mesh, host="lab-a", state_root=state)
    finally:
        tear_down(run, mesh.interface, host="lab-a", state_root=state)
        run(["ip", add[0], "del", *add[2:]])
    line = str(caught.value)
    assert line.startswith(f"lab-a: WireGuard mesh {mesh.interface}, checking the host: ")
    assert f"mesh subnet {plan.subnet} overlaps this host's {named}" in line
    assert "subnet=" in line
    assert "\n" not in line
    # Nothing was built.
    assert mesh.interface not in _links(lab.a)
    assert firewall_names(mesh.interface)[0] not in _nft_tables(lab.a)


@pytest.mark.netns
def test_kernel_wireguard_is_used_where_present_and_its_absence_is_one_line(
    lab: WanLab, tmp_path: Path
) -> None:
    mesh = _plan(lab).for_host("lab-a")
    state = str(tmp_path / "state")
    run = lab.a.run()
    if kernel_wireguard():
        up = bring_up(run, mesh, host="lab-a", state_root=state)
        assert (up.mode, up.pid) == ("kernel", None)
        assert tear_down(run, mesh.interface, host="lab-a", state_root=state).interface_removed
        return
    # Asked for kernel WireGuard where there is none: the firewall was set up by then, and goes.
    with pytest.raises(WireGuardError) as caught:
        bring_up(run, mesh, host="lab-a", mode="kernel", state_root=state)
    line = str(caught.value)
    assert line.startswith(f"lab-a: WireGuard mesh {mesh.interface}, creating the interface: ")
    assert "modprobe wireguard" in line
    assert "\n" not in line
    assert firewall_names(mesh.interface)[0] not in _nft_tables(lab.a)
    assert mesh.interface not in _links(lab.a)
    assert not Path(state, mesh.interface).exists()
