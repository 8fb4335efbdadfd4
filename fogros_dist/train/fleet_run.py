"""Training on a deployment file's machines: ``fogros-dist train <workload> --on FLEET``.

The fleet is an ordinary deployment (``deploy/engine.py``): the file's machines, whatever their
providers, and one node per machine, ``train_agent`` (:mod:`fogros_dist.train.agent`),
which needs torch, so every remote runtime gets it. So provisioning, the runtime push, the record
that ``fogros-dist down`` reads, supervision and the one teardown are the ones every deployment
has: Ctrl-C, a failure or the end of the run leaves nothing running or billing.

Once every machine is ready, the robot knows the head's address on the fleet's network (the first
machine's: the address its SSH connection reached, which on EC2 is the private one behind the
public address) and uploads each agent its ``rendezvous.json``; the agents then become torchrun
with c10d on the head. Ranks talk to each other directly, so the machines must share a network:
one lab LAN, or AWS machines of one region, which :func:`fleet_spec` puts in the deployment's
fleet security group (every protocol from its members only); or ``--vpn wireguard`` joins them
in the run's own mesh (:mod:`fleet_mesh`; an AWS machine's group then admits the mesh's UDP port
from its ``allowed_cidr``). Local machines reach each other only on this host's loopback, so a
fleet does not mix them with remote ones.

Elastic as torchrun is: a machine's agent that dies does not end the run while at least MIN
remain (its node's exit is reported and the run goes on); the run ends when the head's agent
ends, with rank 0's metrics, or as one root-cause line.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from fogros_dist.deploy.engine import Deployment
from fogros_dist.deploy.node_command import files_dir
from fogros_dist.deploy.stages import Stage
from fogros_dist.deploy.state import StateStore
from fogros_dist.deploy.teardown import TeardownReport, process_key
from fogros_dist.errors import ConfigError, FogError
from fogros_dist.net.wireguard import default_listen_port
from fogros_dist.providers.aws.config import FLEET_GROUP, UDP_PORTS
from fogros_dist.providers.aws.config import parse_options as parse_aws_options
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec, OptionValue, ShippedFile
from fogros_dist.train.agent import RENDEZVOUS_FILE, Rendezvous
from fogros_dist.train.checkpoint import CHECKPOINT_DIR_ENV, CHECKPOINT_FILE
from fogros_dist.train.fleet_mesh import FleetMesh, check_vpn, fleet_address
from fogros_dist.train.local_fleet import FleetRun, TrainingFailed, free_port, saved_model
from fogros_dist.train.options import FleetOptions, NodeRange
from fogros_dist.train.root_cause import root_cause
from fogros_dist.train.worker import METRICS_PREFIX
from fogros_dist.workloads.base import default_model_dir

MODELS_DIR_ENV = "FOGROS_DIST_MODELS"

__all__ = ["AGENT_EXECUTABLE", "fleet_nodes", "fleet_spec", "run_fleet"]

AGENT_EXECUTABLE = "train_agent"
# The head's c10d store listens this far above its bridge port (a port the deployment owns).
_STORE_PORT_OFFSET = 1
# After the head's agent ends, how long the others get to end by themselves before teardown.
_OTHERS_GRACE_S = 30.0
# A failed agent's machine is started again after this long, to rejoin at the next rendezvous.
REJOIN_DELAY_S = 2.0

# The workload option naming a folder of the robot's that every machine reads (policy's bags).
DATASET_OPTION = "--bag-dir"


def fleet_nodes(fleet: DeploymentSpec, requested: NodeRange | None) -> NodeRange:
    """The run's MIN:MAX over ``fleet``'s machines (default: all of them, none optional).

    Raises:
        ConfigError: fewer machines than MIN, or Local machines mixed with remote ones.
    """
    count = len(fleet.machines)
    if count == 0:
        msg = f"fleet {fleet.name!r} has no machines: add [machines.<name>] tables to its file"
        raise ConfigError(msg)
    local = [m.name for m in fleet.machines if m.provider == "local"]
    if local and len(local) != count:
        msg = (
            f"fleet {fleet.name!r} mixes Local machines ({', '.join(local)}) with remote ones: Local "
            "machines reach the others only on this host's loopback; train on the remote machines "
            "alone, or on Local ones alone"
        )
        raise ConfigError(msg)
    nodes = requested or NodeRange(count, count)
    if nodes.minimum > count:
        msg = (
            f"--nodes {nodes}: the run needs at least {nodes.minimum} machines and fleet "
            f"{fleet.name!r} has {count} ({', '.join(m.name for m in fleet.machines)}): lower MIN "
            "or add machines to the fleet file"
        )
        raise ConfigError(msg)
    return NodeRange(nodes.minimum, min(nodes.maximum, count))


def _node_name(machine: str) -> str:
    return "train_agent_" + re.sub(r"\W", "_", machine)


def fleet_spec(fleet: DeploymentSpec, *, placeholder: Path, name: str, vpn: str) -> DeploymentSpec:
    """The deployment that runs the fleet: ``fleet``'s machines, one training agent on each.

    AWS machines get the network the run needs (:func:`_fleet_network`): with ``vpn`` none the
    deployment's fleet security group, with wireguard the mesh's UDP port in their own group.

    Raises:
        ConfigError: an aws machine's options are bad, or it refuses the fleet group the run needs.
    """
    mesh_port = default_listen_port(name)  # the port FleetMesh's plan of deployment ``name`` takes
    machines = tuple(_fleet_network(m, vpn=vpn, mesh_port=mesh_port) for m in fleet.machines)
    nodes = tuple(
        NodeSpec(
            name=_node_name(machine.name),
            package="fogros_dist",
            executable=AGENT_EXECUTABLE,
            machine=machine.name,
            # Makes the node's files directory (where its rendezvous is uploaded) exist and be named
            # in its environment.
            files=(ShippedFile(name="fleet.txt", source=str(placeholder)),),
        )
        for machine in machines
    )
    return replace(fleet, name=name, machines=machines, nodes=nodes)


def _fleet_network(machine: MachineSpec, *, vpn: str, mesh_port: int) -> MachineSpec:
    """``machine`` with the AWS options that let the fleet's ranks reach it (others as they are).

    Each instance's own security group admits only SSH and the bridge port from the robot, while
    gloo/NCCL and the c10d store (bridge port + 1 of the head) are reached from the other ranks:
    without a VPN through the fleet group (every protocol from its members, on the VPC's private
    addresses, which ``fleet_address`` hands out); with the mesh, only its one UDP port.
    """
    if machine.provider != "aws":
        return machine
    options = parse_aws_options(machine)
    if vpn == "none":
        if FLEET_GROUP in dict(machine.options) and not options.fleet_group:
            msg = (
                f"machine {machine.name!r} sets fleet_group = false, but with --vpn none its ranks reach "
                "the others only through the deployment's fleet security group: remove fleet_group "
                "from it, or use --vpn wireguard"
            )
            raise ConfigError(msg)
        return _with_option(machine, FLEET_GROUP, True)
    if vpn == "wireguard":
        ports = sorted({*options.udp_ports, mesh_port})
        return _with_option(machine, UDP_PORTS, ",".join(str(p) for p in ports))
    return machine  # an unknown vpn: check_vpn names it


def _with_option(machine: MachineSpec, key: str, value: OptionValue) -> MachineSpec:
    """``machine`` with option ``key`` set to ``value`` (in its place when the file set it)."""
    if key in dict(machine.options):
        return replace(machine, options=tuple((k, value if k == key else v) for k, v in machine.options))
    return replace(machine, options=(*machine.options, (key, value)))


def run_fleet(
    *,
    fleet: DeploymentSpec,
    workload_argv: Sequence[str],
    options: FleetOptions,
    echo: Callable[[str], None],
    store: StateStore | None = None,
    environ: dict[str, str] | None = None,
    robot_domain_id: int | None = None,
    vpn: str = "none",
    run_dir: Path | None = None,
) -> FleetRun:
    """Train on ``fleet``'s machines; see the module's doc.

    Args:
        fleet: the deployment file's spec (its nodes, if any, are not run: only its machines).
        workload_argv: the workload's name and its training options (for the workers).
        options: the run's shape (``options.nodes`` already checked by :func:`fleet_nodes`).
        echo: where every line goes (already prefixed ``[train:...]``, stages ``train: ...``).
        store: the state store holding the fleet's record (default: the user's).
        environ: extra environment for every worker.
        robot_domain_id: the robot's ROS domain for the deployment's robot bridge.
        vpn: ``wireguard``: the ranks talk over the fleet's own mesh (:mod:`fleet_mesh`).
        run_dir: where the head's last checkpoint is copied back to when the run ends
            (``run_dir/checkpoints/latest.pt``, the place a Local run keeps it); None: left there.

    Raises:
        TrainingFailed: no metrics from rank 0; the message is the root cause.
        ConfigError, FogError: the fleet could not be brought up (nothing is left running).
    """
    with tempfile.TemporaryDirectory(prefix="fogros-fleet-") as scratch:
        return _run_fleet(
            fleet=fleet,
            workload_argv=workload_argv,
            options=options,
            echo=echo,
            store=store or StateStore(),
            environ=environ or {},
            robot_domain_id=robot_domain_id,
            scratch=Path(scratch),
            vpn=vpn,
            run_dir=run_dir,
        )


def _run_fleet(
    *,
    fleet: DeploymentSpec,
    workload_argv: Sequence[str],
    options: FleetOptions,
    echo: Callable[[str], None],
    store: StateStore,
    environ: dict[str, str],
    robot_domain_id: int | None,
    scratch: Path,
    vpn: str,
    run_dir: Path | None,
) -> FleetRun:
    started = time.monotonic()
    run_id = f"fogros-{uuid.uuid4().hex[:12]}"
    name = f"{fleet.name}-train"
    placeholder = scratch / "fleet.txt"
    placeholder.write_text(f"training run {run_id}\n")
    spec = fleet_spec(fleet, placeholder=placeholder, name=name, vpn=vpn)
    lines: dict[str, list[str]] = {m.name: [] for m in spec.machines}
    metrics: dict[str, float] | None = None
    lock = threading.Lock()

    def output(machine: str, process: str, _stream: str, text: str) -> None:
        nonlocal metrics
        if not process.startswith("train_agent") and " WARNING " not in text and " ERROR " not in text:
            return  # the fleet's bridges: only what needs the user's attention
        with lock:
            lines.setdefault(machine, []).append(text)
            if text.startswith(METRICS_PREFIX):
                metrics = json.loads(text[len(METRICS_PREFIX) :])
                return
        echo(text if text.startswith("[train:") else f"[train:{machine}] {text}")

    def stage(event: Stage) -> None:
        if event.stage not in {"stdout", "stderr"}:
            echo(f"train: {event.line()}")

    deployment = Deployment(spec, store=store, reporter=stage, output=output, robot_domain_id=robot_domain_id)
    check_vpn(fleet, vpn)
    dataset = _robot_dataset(spec, workload_argv)
    mesh = FleetMesh(deployment, spec, echo) if vpn == "wireguard" else None
    try:
        deployment.up()
        addresses = mesh.up() if mesh is not None else {}
        _hand_out_rendezvous(
            deployment,
            spec,
            options,
            head_address=addresses.get(spec.machines[0].name, ""),
            workload_argvs=_push_dataset(deployment, spec, tuple(workload_argv), dataset, echo),
            run_id=run_id,
            environ=environ,
            where=scratch,
        )
        codes = _supervise(deployment, spec, echo, rejoins=options.max_restarts)
        model = _bring_back_model(deployment, [text for texts in lines.values() for text in texts], echo)
        if run_dir is not None:
            _bring_back_checkpoint(deployment, spec.machines[0].name, run_id, run_dir, echo)
    finally:
        if mesh is not None:
            mesh.down()
        left = _left_behind(deployment.down())
    head = spec.machines[0].name
    if metrics is None or codes.get(head) != 0:
        failure = _failure_line(lines, codes)
        raise TrainingFailed(f"{failure}; and {left}" if left else failure)
    for machine, code in codes.items():
        if code not in (0, None):
            echo(f"[train:{machine}] its agent ended with exit code {code}; the run finished without it")
    return FleetRun(
        metrics=metrics,
        exit_codes={m: (c if c is not None else 0) for m, c in codes.items()},
        seconds=time.monotonic() - started,
        model=model,
        lines=tuple(text for texts in lines.values() for text in texts),
        left_behind=left,
    )


def _left_behind(torn: TeardownReport) -> str:
    """One line for what the teardown left (a machine it could not reach: its processes may run
    on, and its record is kept), or ""."""
    if not torn.errors:
        return ""
    return (
        f"deployment {torn.deployment} is NOT down ({'; '.join(torn.errors)}): "
        f"run `fogros-dist down {torn.deployment}` once its machines can be reached"
    )


def _bring_back_model(deployment: Deployment, lines: list[str], echo: Callable[[str], None]) -> Path | None:
    """Copy the model rank 0 saved on its machine to the robot's model directory (same name)."""
    saved = saved_model(lines)
    if saved is None:
        return None
    machine, remote = saved
    return _bring_back(
        deployment, machine, remote, default_model_dir() / PurePosixPath(remote).name, what="model", echo=echo
    )


def _bring_back_checkpoint(
    deployment: Deployment, head: str, run_id: str, run_dir: Path, echo: Callable[[str], None]
) -> None:
    """Copy the head's last checkpoint (rank 0 writes it there) into the robot's run directory, so
    that a run can be resumed or inspected after its machines are gone."""
    host, _ = deployment.provider_of(head)
    remote = f"{_checkpoint_dir(host.workdir, run_id)}/{CHECKPOINT_FILE}"
    _bring_back(
        deployment, head, remote, run_dir / "checkpoints" / CHECKPOINT_FILE, what="checkpoint", echo=echo
    )


def _checkpoint_dir(workdir: str, run_id: str) -> str:
    # One directory per run: a machine's workdir outlives its deployment, and the next run of the
    # same fleet would otherwise "resume" from the last one's final epoch and train nothing.
    return f"{workdir}/checkpoints/{run_id}"


def _bring_back(
    deployment: Deployment, machine: str, remote: str, local: Path, *, what: str, echo: Callable[[str], None]
) -> Path | None:
    """Download ``remote`` of ``machine`` to ``local``; a failure is one line and leaves it there."""
    host, provider = deployment.provider_of(machine)
    download = getattr(provider, "download", None)
    if download is None:
        echo(f"train: the {what} stays on machine {machine!r} at {remote}: its provider cannot download")
        return None
    try:
        got: Path = download(host, remote, local)
    except FogError as err:
        echo(f"train: the {what} stays on machine {machine!r} at {remote}: {err}")
        return None
    echo(f"train: {what} copied back from {machine}:{remote} to {got}")
    return got


def _robot_dataset(spec: DeploymentSpec, workload_argv: Sequence[str]) -> Path | None:
    """The robot folder the workload reads (``--bag-dir``) when a remote machine needs it pushed;
    checked before anything is created (one ConfigError line)."""
    value = _option_value(workload_argv, DATASET_OPTION)
    if value is None or all(m.provider == "local" for m in spec.machines):
        return None  # Local machines read it where it is
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        msg = f"{DATASET_OPTION} {value} is not a folder on this robot: name the folder holding the bags"
        raise ConfigError(msg)
    return folder


def _push_dataset(
    deployment: Deployment,
    spec: DeploymentSpec,
    workload_argv: tuple[str, ...],
    dataset: Path | None,
    echo: Callable[[str], None],
) -> dict[str, tuple[str, ...]]:
    """Each machine's workload argv: with a robot dataset, each remote machine gets it by delta
    sync into its dataset cache (a second run sends only what changed) and reads it there."""
    argvs = {m.name: workload_argv for m in spec.machines}
    if dataset is None:
        return argvs
    for machine in spec.machines:
        host, provider = deployment.provider_of(machine.name)
        if host.provider == "local":
            continue
        push = getattr(provider, "push_dataset", None)
        if push is None:
            msg = (
                f"{DATASET_OPTION}: provider {host.provider!r} of machine {machine.name!r} cannot "
                "receive a folder: train on machines of another provider"
            )
            raise ConfigError(msg)
        remote, stats = push(host, dataset)
        echo(f"train: {DATASET_OPTION} {dataset} on {machine.name}: {stats.describe()}, at {remote}")
        argvs[machine.name] = _with_option_value(workload_argv, DATASET_OPTION, remote)
    return argvs


def _option_value(argv: Sequence[str], option: str) -> str | None:
    """The value of ``option`` in ``argv`` (``--opt V`` or ``--opt=V``; the last one wins, as
    argparse's), or None."""
    value = None
    for i, word in enumerate(argv):
        if word == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith(option + "="):
            value = word[len(option) + 1 :]
    return value


def _with_option_value(argv: tuple[str, ...], option: str, value: str) -> tuple[str, ...]:
    """``argv`` with every value of ``option`` replaced by ``value``."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == option:
            out += [option, value]
            next(words, None)
        elif word.startswith(option + "="):
            out.append(f"{option}={value}")
        else:
            out.append(word)
    return tuple(out)


def _hand_out_rendezvous(
    deployment: Deployment,
    spec: DeploymentSpec,
    options: FleetOptions,
    *,
    head_address: str,
    workload_argvs: dict[str, tuple[str, ...]],
    run_id: str,
    environ: dict[str, str],
    where: Path,
) -> None:
    """Write and upload each machine's rendezvous.json (the head's address is known now: its
    mesh address with a VPN, else ``fleet_address``)."""
    head_host, _ = deployment.provider_of(spec.machines[0].name)
    address = head_address or fleet_address(head_host)
    port = free_port() if head_host.provider == "local" else head_host.bridge_port + _STORE_PORT_OFFSET
    endpoint = f"{address}:{port}"
    env = {
        "OMP_NUM_THREADS": "1",
        # pytorch issue 135712: restarted workers otherwise reconnect to a stale store address.
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "PYTHONUNBUFFERED": "1",
        **environ,
    }
    for index, machine in enumerate(spec.machines):
        host, provider = deployment.provider_of(machine.name)
        node = spec.nodes_on(machine.name)[0]
        rendezvous = Rendezvous(
            machine=machine.name,
            run_id=run_id,
            endpoint=endpoint,
            is_host=index == 0,
            min_nodes=options.nodes.minimum,
            max_nodes=options.nodes.maximum,
            nproc_per_node=options.nproc_per_node,
            max_restarts=options.max_restarts,
            join_wait_s=options.join_wait_s,
            workload_argv=workload_argvs[machine.name],
            env=tuple(
                sorted(
                    {
                        **env,
                        CHECKPOINT_DIR_ENV: _checkpoint_dir(host.workdir, run_id),
                        # Rank 0 saves into the run's own directory there, never over a model the
                        # machine's user keeps in their cache; it comes back to the robot's.
                        MODELS_DIR_ENV: f"{host.workdir}/models",
                    }.items()
                )
            ),
        )
        local = where / f"rendezvous-{machine.name}.json"
        local.write_text(rendezvous.to_json())
        provider.upload(host, local, f"{files_dir(node)}/{RENDEZVOUS_FILE}")


def _supervise(
    deployment: Deployment, spec: DeploymentSpec, echo: Callable[[str], None], *, rejoins: int
) -> dict[str, int | None]:
    """Wait for the head's agent to end; exit codes by machine. Another machine's agent that fails
    meanwhile is started again after REJOIN_DELAY_S, at most ``rejoins`` times per machine: it
    waits at the rendezvous, and the head's torch elastic takes it in at the next round (a
    membership change, which counts against no restart budget); without rejoins the run goes on
    without it (elastic, down to MIN)."""
    keys = {m.name: process_key(m.name, spec.nodes_on(m.name)[0].process_name) for m in spec.machines}
    head = spec.machines[0].name
    handled: dict[str, int] = {}  # machine -> exits handled so far
    restarted: dict[str, int] = {}
    rejoin_at: dict[str, float] = {}
    head_done_at: float | None = None
    while True:
        codes = deployment.node_exit_codes()
        by_machine = {m: codes.get(k) for m, k in keys.items()}
        for machine, code in by_machine.items():
            exits = restarted.get(machine, 0) + 1
            if code is None or machine == head or handled.get(machine, 0) >= exits:
                continue
            handled[machine] = exits
            if code == 0:
                continue
            if by_machine[head] is None and restarted.get(machine, 0) < rejoins:
                done = restarted.get(machine, 0) + 1
                echo(
                    f"[train:{machine}] its agent exited with code {code}; starting it again in "
                    f"{REJOIN_DELAY_S:g} s to rejoin the run ({done} of {rejoins})"
                )
                rejoin_at[machine] = time.monotonic() + REJOIN_DELAY_S
            else:
                echo(f"[train:{machine}] its agent exited with code {code}; the run goes on without it")
        for machine, when in list(rejoin_at.items()):
            if time.monotonic() >= when:
                del rejoin_at[machine]
                restarted[machine] = restarted.get(machine, 0) + 1
                if by_machine[head] is None and not deployment.restart_node(keys[machine]):
                    echo(
                        f"[train:{machine}] its agent could not be started again; the run goes on without it"
                    )
        if by_machine[head] is not None:
            # The others end with the head's last round; one that cannot be reached is not
            # waited for (teardown says what is left of it).
            waiting = [
                m
                for m, c in by_machine.items()
                if c is None and m not in rejoin_at and deployment.node_unreachable(keys[m]) is None
            ]
            waited = 0.0 if head_done_at is None else time.monotonic() - head_done_at
            if not waiting or waited > _OTHERS_GRACE_S:
                return by_machine
            if head_done_at is None:
                head_done_at = time.monotonic()
                echo(
                    f"train: {head}'s agent ended; waiting up to {_OTHERS_GRACE_S:g} s for "
                    f"{', '.join(waiting)} to end"
                )
        time.sleep(0.2)


def _failure_line(lines: dict[str, list[str]], codes: dict[str, int | None]) -> str:
    for machine, text in lines.items():
        failure = root_cause("\n".join(text))
        if failure is not None:
            return f"training failed: {failure.describe(machine)}"
    ended = ", ".join(f"{m} exit {c}" for m, c in codes.items())
    return f"training failed with no worker error reported ({ended}): see the [train:...] lines above"
