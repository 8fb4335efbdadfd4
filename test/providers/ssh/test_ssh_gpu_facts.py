"""GPU machines: the GPUs a host's probe sees (``nvidia-smi``), carried in the Host and shown by
`fogros-dist list`; torch in the runtime when a node needs it.

There is no GPU here: a host gets a FAKE ``nvidia-smi`` (a shell script answering the probe's
query) first on its PATH through sshd's SetEnv; the real absence is every other lab host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import edge_deployment
from ssh_fixtures import FAST_RETRY, ssh_options
from sshlab import LabHost, SSHLab

from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.ssh import SSHProvider
from fogros_dist.remote.agent import Gpu, gpus_from_json
from fogros_dist.spec import Host, MachineSpec, NodeSpec

pytestmark = pytest.mark.netns

# What nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader prints on a
# two-GPU machine (the format of NVIDIA's own tool).
FAKE_LINES = "NVIDIA A10G, 23028 MiB, 550.54.15\nNVIDIA A10G, 23028 MiB, 550.54.15\n"
_PRINTF = FAKE_LINES.replace("\n", "\\n")
FAKE_NVIDIA_SMI = f"""#!/bin/sh
# FAKE nvidia-smi for fogros_dist's tests: answers the probe's query, or fails as the real one
# does when no driver is loaded (mode file next to it).
[ "$1" = "--query-gpu=name,memory.total,driver_version" ] && [ "$2" = "--format=csv,noheader" ] || exit 2
if [ "$(cat "$(dirname "$0")/mode")" = fail ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
  exit 9
fi
printf '{_PRINTF}'
"""


@pytest.fixture(scope="session")
def fake_gpu_dir(ssh_lab: SSHLab) -> Path:
    """A directory holding the FAKE nvidia-smi (and its mode file)."""
    directory = ssh_lab.root / "fake-nvidia-smi"
    directory.mkdir(exist_ok=True)
    script = directory / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    (directory / "mode").write_text("ok\n")
    return directory


@pytest.fixture(scope="session")
def gpu_box(ssh_lab: SSHLab, fake_gpu_dir: Path) -> LabHost:
    """An SSH host whose sessions find the FAKE nvidia-smi first on PATH."""
    path = f"{fake_gpu_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return ssh_lab.ensure_host("gpubox", port=2023, sshd_extra=f"SetEnv PATH={path}\n")


@pytest.fixture
def gpu_mode(fake_gpu_dir: Path) -> Iterator[Path]:
    """The fake's mode file (``ok`` or ``fail``); reset to ``ok`` afterwards."""
    mode = fake_gpu_dir / "mode"
    yield mode
    mode.write_text("ok\n")


def _create(
    lab: SSHLab, host: LabHost, tmp_path: Path, known_hosts: Path, nodes: tuple[NodeSpec, ...] = ()
) -> tuple[SSHProvider, Host, list[tuple[str, str]]]:
    known_hosts.write_text(known_hosts.read_text() + host.known_hosts_line())
    options = ssh_options(lab, host, known_hosts, ros_setup="none")
    machine = MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))
    events: list[tuple[str, str]] = []
    provider = SSHProvider(retry=FAST_RETRY)
    ctx = ProvisionContext(
        deployment="gpu-facts",
        state_dir=tmp_path,
        progress=lambda stage, message: events.append((stage, message)),
        nodes=nodes,
    )
    return provider, provider.create(machine, ctx), events


def test_the_probe_reports_the_gpus_nvidia_smi_lists_and_list_shows_them(
    ssh_lab: SSHLab, gpu_box: LabHost, gpu_mode: Path, known_hosts: Path, tmp_path: Path
) -> None:
    assert shutil.which("nvidia-smi") is None, "this test expects a machine without a real GPU"
    provider, host, events = _create(ssh_lab, gpu_box, tmp_path, known_hosts)
    try:
        gpus = gpus_from_json(dict(host.env)["FOGROS_SSH_GPUS"])
        assert gpus == (Gpu(name="NVIDIA A10G", memory="23028 MiB", driver="550.54.15"),) * 2
        running = dict(events)["running"]
        assert "2x NVIDIA A10G (23028 MiB, driver 550.54.15)" in running, running
        # The GPU facts are connection facts: never in the processes' environment.
        assert not any("GPU" in key for key, _ in host.env if not key.startswith("FOGROS_SSH_"))
    finally:
        provider.terminate(host)

    # `fogros-dist list` from another process reads them from the state record.
    home = tmp_path / "home"
    now = time.time()
    spec = edge_deployment("gpu-facts", MachineSpec(name="gpu", provider="ssh", options=(("host", "x"),)))
    StateStore(home).create(
        DeploymentState(
            spec=spec, status="running", created_at=now, updated_at=now, robot_domain_id=0, hosts=(host,)
        )
    )
    env = dict(os.environ, FOGROS_DIST_HOME=str(home))
    cli = [sys.executable, "-m", "fogros_dist.cli.main", "list"]
    table = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    header, row = table.splitlines()[:2]
    assert "GPUS" in header.split()
    assert "gpu: 2x NVIDIA A10G (23028 MiB, driver 550.54.15)" in row
    rows = json.loads(
        subprocess.run(
            [*cli, "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    assert rows[0]["gpus"] == {
        "gpu": [{"name": "NVIDIA A10G", "memory": "23028 MiB", "driver": "550.54.15"}] * 2
    }


def test_a_failing_nvidia_smi_means_no_gpu(
    ssh_lab: SSHLab, gpu_box: LabHost, gpu_mode: Path, known_hosts: Path, tmp_path: Path
) -> None:
    gpu_mode.write_text("fail\n")
    provider, host, events = _create(ssh_lab, gpu_box, tmp_path, known_hosts)
    provider.terminate(host)
    assert gpus_from_json(dict(host.env)["FOGROS_SSH_GPUS"]) == ()
    assert ", no GPU, " in dict(events)["running"]


def test_a_host_without_nvidia_smi_has_no_gpu(
    ssh_lab: SSHLab, alpha: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    provider, host, events = _create(ssh_lab, alpha, tmp_path, known_hosts)
    provider.terminate(host)
    assert gpus_from_json(dict(host.env)["FOGROS_SSH_GPUS"]) == ()
    assert ", no GPU, " in dict(events)["running"]


def test_torch_goes_to_the_runtime_of_a_machine_whose_node_needs_it(
    ssh_lab: SSHLab, gpu_box: LabHost, known_hosts: Path, tmp_path: Path
) -> None:
    for executable, torch in (("grasp_planner", "1"), ("edge_detector", "")):
        node = NodeSpec(name="n", package="fogros_dist", executable=executable, machine="gpu")
        provider, host, _events = _create(ssh_lab, gpu_box, tmp_path, known_hosts, nodes=(node,))
        provider.terminate(host)
        # What `prepare` installs from (the venv's key includes it).
        assert dict(host.env)["FOGROS_SSH_TORCH"] == torch, executable
