"""`fogros-dist train grasp --on FLEET`: a deployment file's machines train, here two real OpenSSH
hosts on one shared subnet (a lab LAN), and two on two subnets joined only by the fleet's WireGuard
mesh: the runtime there gets torch, the agents meet at the head's address, gloo talks host to host,
a machine killed mid-run leaves the other to finish, and when the run ends nothing is left on
either host or on the robot, and no record remains."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshlab import LabHost, SSHLab, ssh_options

from fogros_dist.deploy.state import StateStore
from fogros_dist.spec import OptionValue

torch = pytest.importorskip("torch")

CLI = [sys.executable, "-m", "fogros_dist.cli.main"]
SMALL = [
    "--scenes", "24", "--eval-scenes", "8", "--grasps-per-scene", "16", "--epochs", "2",
    "--plan-images", "0", "--batch-size", "64",
]  # fmt: skip


def _toml(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else json.dumps(value)


def _fleet_file(path: Path, name: str, machines: dict[str, dict[str, OptionValue]], provider: str) -> Path:
    lines = [f'name = "{name}"']
    for machine, options in machines.items():
        lines += ["[[machines]]", f'name = "{machine}"', f'provider = "{provider}"']
        if options:
            lines.append("[machines.options]")
            lines += [f"{key} = {_toml(value)}" for key, value in sorted(options.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ssh_fleet(ssh_lab: SSHLab, hosts: list[LabHost], tmp_path: Path, *, name: str, prefix: str) -> Path:
    """A fleet file of ``hosts`` as SSH machines ``<prefix>0``, ``<prefix>1`` ..., their keys trusted."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(host.known_hosts_line() for host in hosts))
    machines = {
        f"{prefix}{i}": ssh_options(ssh_lab, host, known_hosts, ros_setup="none")
        for i, host in enumerate(hosts)
    }
    return _fleet_file(tmp_path / "fleet.toml", name, machines, "ssh")


@pytest.fixture(scope="module")
def lan_hosts(ssh_lab: SSHLab) -> Iterator[list[LabHost]]:
    """Two SSH hosts on one shared subnet."""
    lan = ssh_lab.add_lan()
    hosts = [ssh_lab.add_host(f"lan{i}", port=22, lan=lan) for i in range(2)]
    yield hosts
    for host in hosts:
        ssh_lab.close_host(host)


def _env(tmp_path: Path, wheel_cache: Path, robot_domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FOGROS_DIST_HOME=str(tmp_path / "home"),
        FOGROS_DIST_CACHE=str(wheel_cache),
        HOME=str(tmp_path),
        # Where the robot keeps models (else $XDG_CACHE_HOME's, which CI sets elsewhere).
        FOGROS_DIST_MODELS=str(tmp_path / "robot-models"),
        ROS_DOMAIN_ID=str(robot_domain),
        PYTHONUNBUFFERED="1",
    )
    return env


def _train(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "train", "grasp", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _agent_processes(host: LabHost, machine: str) -> list[int]:
    """The processes of ``machine``'s training agent in ``host``'s namespace: torchrun's agent and
    its workers (the agent names its machine in their environment; sshd and the deployment's
    supervisor there do not carry it)."""
    found = []
    for pid in host.namespace_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"FOGROS_DIST_MACHINE={machine}".encode() in environ:
            found.append(pid)
    return found


def _run_killing(
    argv: list[str],
    env: dict[str, str],
    after: str,
    host: LabHost,
    machine: str,
    *,
    then: list[str] | None = None,
) -> tuple[str, str, int]:
    """Run ``argv``; once a stderr line matches ``after``, SIGKILL ``machine``'s agent processes on
    ``host`` (and run ``then`` right after, e.g. to cut its link). Returns (stdout, every line
    printed, exit code)."""
    popen = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    assert popen.stderr is not None
    seen: list[str] = []
    try:
        for line in popen.stderr:
            seen.append(line)
            if re.search(after, line):
                break
        else:
            raise AssertionError("".join(seen)[-4000:])
        victims = _agent_processes(host, machine)
        assert len(victims) >= 2, "".join(seen)[-3000:]  # torchrun's agent and its worker
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        if then is not None:
            subprocess.run(then, check=True)
        stdout, rest = popen.communicate(timeout=900)
    except BaseException:
        os.killpg(popen.pid, signal.SIGKILL)
        raise
    return stdout, "".join(seen) + rest, popen.returncode


def _assert_only_sshd_left(hosts: list[LabHost]) -> None:
    for host in hosts:
        sshd = host.sshd.pid if host.sshd is not None else -1
        left = [pid for pid in host.namespace_pids() if pid != sshd]
        assert not left, (host.name, left)


@pytest.mark.netns
def test_two_ssh_hosts_on_one_lan_train_and_one_killed_rejoins_from_the_checkpoint(
    ssh_lab: SSHLab, lan_hosts: list[LabHost], wheel_cache: Path, tmp_path: Path, robot_domain: int
) -> None:
    """World 2 on the LAN until gpu1's agent and worker are SIGKILLed after the first epoch; the
    head's torch elastic restarts the round (--nodes 1:2), gpu1's agent is started again and joins
    it, every round after the kill resumes from rank 0's checkpoint, and the run finishes at world
    2; model and checkpoint come back, nothing is left anywhere. (A round that goes on alone is
    test_local_fleet.py's kill test.)"""
    fleet = _ssh_fleet(ssh_lab, lan_hosts, tmp_path, name="lanfleet", prefix="gpu")
    env = _env(tmp_path, wheel_cache, robot_domain)
    # Epochs of a second or more here, so that the kill lands mid-run and the rejoin before its end.
    argv = [*CLI, "train", "grasp", "--on", str(fleet), "--nodes", "1:2", "--max-restarts", "2",
            "--scenes", "96", "--eval-scenes", "8", "--grasps-per-scene", "16", "--epochs", "12",
            "--plan-images", "0", "--batch-size", "16", "--json"]  # fmt: skip
    stdout, out, code = _run_killing(
        argv, env, r"^\[train:gpu0:0\] train: epoch 1/12 .* world 2", lan_hosts[1], "gpu1"
    )
    assert code == 0, out[-4000:]
    metrics = json.loads(stdout)
    assert metrics["world_size"] == 2, out[-4000:]
    assert metrics["heldout_accuracy"] > 0.55, metrics
    # Both machines' ranks reported; each agent joined the head's LAN address from its own one,
    # gpu1's twice: before the kill and when it came back.
    head, other = lan_hosts
    assert re.search(r"^\[train:gpu1:1\] ", out, re.M), out[-3000:]
    joined = re.findall(r"^\[train:(gpu\d)\] joining ([\d.]+):\d+ as ([\d.]+)", out, re.M)
    assert sorted(joined) == [
        ("gpu0", head.address, head.address),
        ("gpu1", head.address, other.address),
        ("gpu1", head.address, other.address),
    ], joined
    assert re.search(
        r"^\[train:gpu1\] its agent exited with code -9; "
        r"starting it again in 2 s to rejoin the run \(1 of 2\)$",
        out,
        re.M,
    ), out[-3000:]
    # The rounds after the kill resumed from the checkpoint; the last one finished at world 2.
    assert re.search(
        r"^\[train:gpu0:0\] train: resumed after epoch \d+/12 from the run's checkpoint", out, re.M
    ), out[-4000:]
    assert re.search(r"^\[train:gpu0:0\] train: epoch 12/12 .* world 2", out, re.M), out[-3000:]
    # Rank 0 saved into the run's directory on its machine; model and checkpoint came back.
    back = re.search(r"^train: model copied back from gpu0:(\S+) to (\S+)$", out, re.M)
    assert back is not None, out[-3000:]
    assert "/deployments/lanfleet-train/gpu0/models/" in back[1]
    assert Path(back[2]) == tmp_path / "robot-models" / "grasp.pt"
    assert Path(back[2]).stat().st_size > 10_000
    checkpoint = re.search(r"^train: checkpoint copied back from gpu0:\S+ to (\S+)$", out, re.M)
    assert checkpoint is not None, out[-3000:]
    state = torch.load(checkpoint[1], map_location="cpu", weights_only=True)
    assert state["epoch"] == 12
    report = re.search(r"^train: report (\S+) and (\S+)$", out, re.M)
    assert report is not None, out[-3000:]
    assert Path(report[1]).parent == Path(checkpoint[1]).parent.parent  # one run directory
    figures = json.loads(Path(report[1]).read_text())
    assert figures["figures"]["world_size"]["value"] == 2
    assert Path(report[2]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing is left: no record, no process in either host's namespace but its sshd.
    assert StateStore(tmp_path / "home").names() == []
    _assert_only_sshd_left(lan_hosts)


@pytest.mark.netns
def test_a_machine_lost_mid_run_leaves_the_rest_to_finish_and_its_record_to_down(
    ssh_lab: SSHLab, lan_hosts: list[LabHost], wheel_cache: Path, tmp_path: Path, robot_domain: int
) -> None:
    """gpu1 is lost after the first epoch: its agent and worker are SIGKILLed and its link is cut
    at once, as a machine that crashed and dropped off the network. The head's round goes on
    alone (--nodes 1:2) from the checkpoint and finishes; the model comes back. gpu1 cannot be
    reached to be torn down, so the run says so in one line, exits non-zero and keeps the
    deployment's record; once the link is back, `fogros-dist down` removes what was left there."""
    fleet = _ssh_fleet(ssh_lab, lan_hosts, tmp_path, name="lostfleet", prefix="gpu")
    env = _env(tmp_path, wheel_cache, robot_domain)
    lost = lan_hosts[1]
    # The head's connections to gpu1 never close (no FIN crosses a cut link): its all-reduce waits
    # out --collective-timeout, then torch elastic's next round goes on without gpu1.
    argv = [*CLI, "train", "grasp", "--on", str(fleet), "--nodes", "1:2", "--max-restarts", "2",
            "--collective-timeout", "15", "--scenes", "96", "--eval-scenes", "8", "--grasps-per-scene",
            "16", "--epochs", "5", "--plan-images", "0", "--batch-size", "16", "--json"]  # fmt: skip
    link = ["ip", "-n", lost.netns, "link", "set", lost.veth_host]
    try:
        _stdout, out, code = _run_killing(
            argv, env, r"^\[train:gpu0:0\] train: epoch 1/5 .* world 2", lost, "gpu1", then=[*link, "down"]
        )
        # The head finished alone, from the checkpoint, and its model came back.
        resumed = r"^\[train:gpu0:0\] train: resumed after epoch \d+/5 from the run's checkpoint"
        assert re.search(resumed, out, re.M), out[-4000:]
        assert re.search(r"^\[train:gpu0:0\] train: epoch 5/5 .* world 1", out, re.M), out[-4000:]
        assert re.search(r"^train: model copied back from gpu0:\S+ to \S+$", out, re.M), out[-3000:]
        assert (tmp_path / "robot-models" / "grasp.pt").stat().st_size > 10_000
        # The run says what is left and how to remove it, and does not claim a clean end.
        assert code == 1, out[-4000:]
        last = out.strip().splitlines()[-1]
        assert last.startswith("fogros-dist: error: "), last
        assert "gpu1" in last, last
        assert "fogros-dist down lostfleet-train" in last, last
        assert StateStore(tmp_path / "home").names() == ["lostfleet-train"]
    finally:
        subprocess.run([*link, "up"], check=True)
    done = subprocess.run(
        [*CLI, "down", "lostfleet-train"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert StateStore(tmp_path / "home").names() == []
    _assert_only_sshd_left(lan_hosts)


def test_a_labs_bags_reach_both_ssh_hosts_by_delta_sync_once_and_the_policy_trains_there(
    ssh_lab: SSHLab, lan_hosts: list[LabHost], wheel_cache: Path, tmp_path: Path, robot_domain: int
) -> None:
    """--bag-dir on the robot: pushed to each host's dataset cache (all files the first time,
    none the second), read there by both ranks; the policy comes back, the lab's folder is as it was."""
    from lab_bags import CMD_TOPIC, STATE_TOPIC, snapshot, write_lab_bags

    bags = tmp_path / "lab_bags"
    write_lab_bags(bags, count=8)
    before = snapshot(bags)
    files = sum(1 for p in bags.rglob("*") if p.is_file())
    fleet = _ssh_fleet(ssh_lab, lan_hosts, tmp_path, name="bagfleet", prefix="gpu")
    env = _env(tmp_path, wheel_cache, robot_domain)
    argv = [*CLI, "train", "policy", "--on", str(fleet), "--bag-dir", str(bags),
            "--obs-topic", STATE_TOPIC, "--obs-fields", "position[0],position[1],velocity[0],velocity[1]",
            "--action-topic", CMD_TOPIC, "--action-fields", "linear.x,linear.y", "--rate", "20",
            "--time", "receive", "--epochs", "6", "--json"]  # fmt: skip
    sent = []
    for _run in range(2):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        pushed = re.findall(
            rf"^train: --bag-dir {re.escape(str(bags))} on (gpu\d): (\d+) of (\d+) files sent\b.*, at (\S+)$",
            out,
            re.M,
        )
        assert sorted(p[0] for p in pushed) == ["gpu0", "gpu1"], out[-3000:]
        assert all(int(p[2]) == files for p in pushed), (pushed, files)
        sent.append(sorted(int(p[1]) for p in pushed))
        # Each rank read the 8 bags where they were pushed, in the host's own dataset cache.
        for machine, _sent, _total, remote in pushed:
            assert "/datasets/lab_bags-" in remote
            rank = 0 if machine == "gpu0" else 1
            assert re.search(rf"^\[train:{machine}:{rank}\] read 8 bags at 20 Hz", out, re.M), out[-3000:]
        metrics = json.loads(done.stdout)
        assert metrics["world_size"] == 2
        assert metrics["heldout_mse"] < metrics["baseline_mean_action_mse"], metrics
        # Each run trains all its epochs: the last run's checkpoint on the same hosts is not this one's.
        assert "resumed after" not in out, out[-3000:]
        assert len(re.findall(r"^\[train:gpu0:0\] train: epoch \d/6 step .* world 2", out, re.M)) == 6
    # The first run sent every file to each host, the second none (delta sync).
    assert sent == [[files, files], [0, 0]], sent
    back = re.search(r"^train: model copied back from gpu0:(\S+) to (\S+)$", out, re.M)
    assert back is not None, out[-3000:]
    assert Path(back[2]) == tmp_path / "robot-models" / "policy.pt"
    assert snapshot(bags) == before
    assert StateStore(tmp_path / "home").names() == []
    _assert_only_sshd_left(lan_hosts)


def test_a_fleet_with_fewer_machines_than_min_is_one_line(tmp_path: Path) -> None:
    fleet = _fleet_file(tmp_path / "fleet.toml", "small", {"a": {}, "b": {}}, "local")
    env = dict(os.environ, FOGROS_DIST_HOME=str(tmp_path / "home"))
    done = _train(env, "--on", str(fleet), "--nodes", "3", *SMALL, timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert "at least 3 machines" in errors[0]
    assert "'small' has 2 (a, b)" in errors[0]
    assert not (tmp_path / "home" / "deployments").exists() or StateStore(tmp_path / "home").names() == []


def test_local_machines_mixed_with_remote_ones_are_refused_by_name(tmp_path: Path) -> None:
    fleet = tmp_path / "mixed.toml"
    fleet.write_text(
        'name = "mixed"\n[[machines]]\nname = "here"\nprovider = "local"\n'
        '[[machines]]\nname = "there"\nprovider = "ssh"\n[machines.options]\nhost = "10.0.0.9"\n'
    )
    env = dict(os.environ, FOGROS_DIST_HOME=str(tmp_path / "home"))
    done = _train(env, "--on", str(fleet), *SMALL, timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr
    assert "mixes Local machines (here)" in errors[0]


# The two-lab fleet's name, one per test process: the mesh's interface names follow it, and with
# them wireguard-go's control sockets in the /var/run/wireguard every namespace shares, which
# make test's workers (running side by side) must not meet.
_TWO_LABS = f"twolabs{os.getpid()}"


@pytest.fixture(scope="module")
def two_labs(ssh_lab: SSHLab) -> Iterator[list[LabHost]]:
    """Two SSH hosts on two subnets whose only path to each other is a router that passes UDP to
    the training fleet's WireGuard port and nothing else (the internet between two labs)."""
    from fogros_dist.net.wireguard import default_listen_port

    lans = [ssh_lab.add_lan(), ssh_lab.add_lan()]
    hosts = [ssh_lab.add_host(f"lab{i}", port=22, lan=lan) for i, lan in enumerate(lans)]
    router = f"fdtrr{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", router], capture_output=True, check=False)
    port = default_listen_port(f"{_TWO_LABS}-train")

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", router)
    try:
        for i, lan in enumerate(lans):
            near, far = f"{router}a{i}", f"{router}b{i}"
            ip("link", "add", near, "type", "veth", "peer", "name", far)
            ip("link", "set", far, "netns", router)
            ip("link", "set", near, "master", lan.bridge)
            ip("link", "set", near, "up")
            ip("-n", router, "addr", "add", f"10.231.{lan.index}.250/24", "dev", far)
            ip("-n", router, "link", "set", far, "up")
            other = lans[1 - i]
            ip(
                "-n",
                hosts[i].netns,
                "route",
                "add",
                f"10.231.{other.index}.0/24",
                "via",
                f"10.231.{lan.index}.250",
            )
        subprocess.run(
            ["ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True
        )
        rules = (
            "table inet labs {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n"
            f"  udp dport {port} accept\n  udp sport {port} accept\n }}\n}}\n"
        )
        subprocess.run(["ip", "netns", "exec", router, "nft", "-f", "-"], input=rules, text=True, check=True)
        yield hosts
    finally:
        subprocess.run(["ip", "netns", "del", router], capture_output=True, check=False)
        for host in hosts:
            ssh_lab.close_host(host)


def _tcp_reaches(netns: str, address: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({address!r}, {port}), timeout=2)"
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", probe], capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.mark.netns
def test_two_labs_joined_only_by_the_wireguard_mesh_train_together(
    ssh_lab: SSHLab, two_labs: list[LabHost], wheel_cache: Path, tmp_path: Path, robot_domain: int
) -> None:
    if shutil.which("wireguard-go") is None or shutil.which("wg") is None or shutil.which("nft") is None:
        pytest.skip("needs wireguard-go, wireguard-tools and nftables (make system-deps installs them)")
    first, second = two_labs
    # The robot reaches both; they do not reach each other (the router passes only WireGuard's UDP).
    assert not _tcp_reaches(first.netns, second.address, 22)
    fleet = _ssh_fleet(ssh_lab, two_labs, tmp_path, name=_TWO_LABS, prefix="lab")
    env = _env(tmp_path, wheel_cache, robot_domain)
    done = _train(env, "--on", str(fleet), "--vpn", "wireguard", *SMALL, "--json")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert json.loads(done.stdout)["world_size"] == 2
    meshed = dict(re.findall(r"^train: mesh (lab\d): ([\d.]+) on fdwg", out, re.M))
    assert sorted(meshed) == ["lab0", "lab1"], out[-3000:]
    assert all(address.startswith("100.") for address in meshed.values())
    # Each agent joined the head's mesh address from its own, over the WireGuard interface.
    joined = re.findall(r"^\[train:(lab\d)\] joining ([\d.]+):\d+ as ([\d.]+) \((fdwg\w+)\)", out, re.M)
    assert sorted(j[:3] for j in joined) == [
        ("lab0", meshed["lab0"], meshed["lab0"]),
        ("lab1", meshed["lab0"], meshed["lab1"]),
    ], out[-3000:]
    assert re.search(r"^train: mesh lab1: fdwg\w+ removed$", out, re.M)
    for host in two_labs:
        links = subprocess.run(
            ["ip", "-n", host.netns, "-o", "link"], capture_output=True, text=True, check=True
        )
        assert "fdwg" not in links.stdout
    _assert_only_sshd_left(two_labs)


def test_a_robot_killed_while_the_mesh_is_up_leaves_it_to_down(
    ssh_lab: SSHLab, two_labs: list[LabHost], wheel_cache: Path, tmp_path: Path, robot_domain: int
) -> None:
    """SIGKILL the robot's `train` once both machines' mesh is up: the record names each mesh
    interface, and `fogros-dist down` removes wireguard-go, the interface and the firewall table."""
    if shutil.which("wireguard-go") is None or shutil.which("wg") is None or shutil.which("nft") is None:
        pytest.skip("needs wireguard-go, wireguard-tools and nftables (make system-deps installs them)")
    fleet = _ssh_fleet(ssh_lab, two_labs, tmp_path, name=_TWO_LABS, prefix="lab")
    env = _env(tmp_path, wheel_cache, robot_domain)
    argv = [*CLI, "train", "grasp", "--on", str(fleet), "--vpn", "wireguard", *SMALL]
    popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert popen.stderr is not None
    seen: list[str] = []
    try:
        for line in popen.stderr:
            seen.append(line)
            if re.match(r"^train: mesh lab1: ", line):
                break
        else:
            raise AssertionError("".join(seen)[-4000:])
    finally:
        popen.kill()
        popen.wait()
    store = StateStore(tmp_path / "home")
    recorded = {
        h.machine: dict(h.env).get("FOGROS_MESH_INTERFACE", "")
        for h in store.load(f"{_TWO_LABS}-train").hosts
    }
    assert sorted(recorded) == ["lab0", "lab1"]
    assert all(v.startswith("fdwg") for v in recorded.values()), recorded
    for host in two_labs:  # still up: nobody took it down
        links = subprocess.run(
            ["ip", "-n", host.netns, "-o", "link"], capture_output=True, text=True, check=True
        )
        assert "fdwg" in links.stdout
    down = subprocess.run(
        [*CLI, "down", f"{_TWO_LABS}-train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    for host in two_labs:
        links = subprocess.run(
            ["ip", "-n", host.netns, "-o", "link"], capture_output=True, text=True, check=True
        )
        assert "fdwg" not in links.stdout, (host.name, links.stdout)
        tables = subprocess.run(
            ["ip", "netns", "exec", host.netns, "nft", "list", "tables"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "fdwg" not in tables.stdout, (host.name, tables.stdout)
    assert store.names() == []
    _assert_only_sshd_left(two_labs)


def _run_processes_of(home: Path) -> list[str]:
    """This test's fleet processes still alive: agents, workers and bridges started under ``home``."""
    marker = f"FOGROS_DIST_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        busy = ("torch.distributed.run", "train.worker", "train_agent", "bridge_main")
        if marker in environ and any(word in cmdline for word in busy):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_ctrl_c_during_a_fleet_run_leaves_nothing_and_no_record(tmp_path: Path) -> None:
    fleet = _fleet_file(tmp_path / "fleet.toml", "stopme", {"a": {}, "b": {}}, "local")
    home = tmp_path / "home"
    env = dict(os.environ, FOGROS_DIST_HOME=str(home), FOGROS_DIST_MODELS=str(tmp_path / "models"))
    popen = subprocess.Popen(
        [*CLI, "train", "grasp", "--on", str(fleet), *SMALL, "--epochs", "50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert popen.stderr is not None
    seen = []
    for line in popen.stderr:
        seen.append(line)
        if "train: epoch 1/50" in line:
            break
    else:
        pytest.fail("".join(seen))
    assert _run_processes_of(home), "the run's processes should be up"
    assert StateStore(home).names() == ["stopme-train"]
    popen.send_signal(signal.SIGINT)
    try:
        popen.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        raise
    rest = popen.stderr.read()
    assert popen.returncode == 130, "".join(seen) + rest
    assert "deployment stopme-train is down" in rest
    deadline = time.monotonic() + 15
    while _run_processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _run_processes_of(home) == []
    assert StateStore(home).names() == []
