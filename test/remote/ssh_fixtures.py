"""Fixtures for tests with real SSH hosts in namespaces (imported by two conftests).

One lab per session whichever directory asks first (see sshlab.acquire_lab): hosts ``alpha``
(port 22) and ``beta`` (port 2222) live for the whole session; a test that damages a host (a new
host key) builds its own. The robot's wheel cache is shared too, so the wheelhouse is downloaded
once per session.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sshlab import LabHost, SSHLab, acquire_lab, lab_unavailable, release_lab, ssh_options

from fogros_dist.remote.runner import RetryPolicy
from fogros_dist.remote.target import SSHTarget, resolve_target

__all__ = [
    "FAST_RETRY",
    "alpha",
    "beta",
    "known_hosts",
    "make_target",
    "scratch_host",
    "ssh_lab",
    "ssh_options",
    "wheel_cache",
]

# Failing fast where a test provokes a failure: 2 attempts, 50 ms apart.
FAST_RETRY = RetryPolicy(attempts=2, first_delay_s=0.05, max_delay_s=0.05, timeout_s=5.0)
_scratch_names = itertools.count(1)


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHLab]:
    """The session's SSH lab; skips the test where namespaces cannot be built."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"SSH hosts in network namespaces: {reason}")
    lab = acquire_lab(tmp_path_factory.mktemp("sshlab"))
    yield lab
    release_lab()


@pytest.fixture(scope="session")
def alpha(ssh_lab: SSHLab) -> LabHost:
    """An SSH host on port 22 (the one deployments run on)."""
    return ssh_lab.ensure_host("alpha", port=22)


@pytest.fixture(scope="session")
def beta(ssh_lab: SSHLab) -> LabHost:
    """An SSH host on port 2222."""
    return ssh_lab.ensure_host("beta", port=2222)


@pytest.fixture
def scratch_host(ssh_lab: SSHLab) -> Iterator[Callable[[], LabHost]]:
    """Build throwaway hosts (for tests that damage one); all closed after the test."""
    made: list[LabHost] = []

    def make() -> LabHost:
        host = ssh_lab.add_host(f"scratch{next(_scratch_names)}", port=2200 + len(made))
        made.append(host)
        return host

    yield make
    for host in made:
        ssh_lab.close_host(host)


@pytest.fixture(scope="session")
def wheel_cache(ssh_lab: SSHLab) -> Path:
    """The robot's wheel cache for the session (one wheelhouse download)."""
    return ssh_lab.root / "robot-cache"


@pytest.fixture
def known_hosts(tmp_path: Path, alpha: LabHost, beta: LabHost) -> Path:
    """A known_hosts file trusting alpha and beta (their current keys)."""
    path = tmp_path / "known_hosts"
    path.write_text(alpha.known_hosts_line() + beta.known_hosts_line())
    return path


def make_target(lab: SSHLab, host: LabHost, known_hosts: Path, **overrides: object) -> SSHTarget:
    """An SSHTarget for ``host`` as root with the lab's key; no SSH config is read."""
    options: dict[str, object] = {
        "machine": "gpu",
        "host": host.address,
        "port": host.port,
        "user": "root",
        "identity_file": str(lab.client_key),
        "known_hosts": str(known_hosts),
        "ssh_config": str(lab.root / "no-ssh-config"),
    }
    options.update(overrides)
    return resolve_target(**options)  # type: ignore[arg-type]
