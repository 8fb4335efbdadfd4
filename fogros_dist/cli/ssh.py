"""`fogros-dist ssh DEPLOYMENT [MACHINE] [-- COMMAND...]`: a shell (or one command) on a machine.

What FogROS2's ``connect`` does, with the deployment's own key, the host key pinned when the
machine was made (OpenSSH with ``StrictHostKeyChecking=yes`` and the recorded known_hosts file,
never the user's defaults) and the same jump hosts. The connection is first made once by
fogros_dist itself, so an unknown or changed host key, a refused key or an unreachable host is
one line naming the fix, as for ``up``; then OpenSSH replaces this process (its exit code is the
command's). MACHINE may be omitted when the deployment has one remote machine. Local machines
run on this robot: they are refused with the directory their files are in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Any

from fogros_dist.deploy.state import DeploymentState, StateStore
from fogros_dist.errors import ConfigError, MissingDependency
from fogros_dist.remote.machine import ENV_PREFIX, target_from_host
from fogros_dist.remote.runner import RetryPolicy, SSHRunner, openssh_argv
from fogros_dist.spec import Host

__all__ = ["add_parser", "run", "ssh_command"]

# One attempt, quickly: a person is waiting at the prompt.
_CHECK = RetryPolicy(attempts=2, first_delay_s=0.5, max_delay_s=0.5, timeout_s=10.0)


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser(
        "ssh",
        help="open a shell (or run a command) on a deployment's machine, with its pinned host key",
        description=(
            "Open a shell on a machine of a deployment, or run COMMAND there, over OpenSSH with the "
            "deployment's key, its recorded host key and its jump hosts."
        ),
    )
    # One REMAINDER keeps "--" where the user typed it (argparse drops it before a positional).
    parser.add_argument(
        "words", nargs=argparse.REMAINDER, metavar="DEPLOYMENT [MACHINE] [-- COMMAND ...]", help=""
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the connection, then become OpenSSH (never returns: the exit code is ssh's)."""
    deployment, machine, command = _split(list(args.words))
    argv = ssh_command(StateStore().load(deployment), machine=machine, command=command)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], list(argv))


def ssh_command(state: DeploymentState, *, machine: str | None, command: list[str]) -> tuple[str, ...]:
    """The OpenSSH command for ``machine`` of ``state`` (its only remote machine if None), after
    one verified connection to it.

    Raises:
        ConfigError: the machine is unknown, ambiguous or local.
        ProvisionError: the host cannot be reached or its key is unknown or changed (one line).
        MissingDependency: no ``ssh`` client on this robot.
    """
    host = _pick(state, machine)
    target = target_from_host(host)
    runner = SSHRunner(target, retry=_CHECK)
    try:
        runner.connect()
    finally:
        runner.close()
    if shutil.which("ssh") is None:
        msg = "the OpenSSH client 'ssh' is not installed on this robot: install openssh-client"
        raise MissingDependency(msg)
    # A shell gets a terminal when there is one (as plain `ssh host` does); a command gets none
    # unless asked, so its output stays clean for pipes.
    tty = ["-t"] if not command and sys.stdin.isatty() else []
    return (*openssh_argv(target), *tty, target.hostname, *command)


def _pick(state: DeploymentState, machine: str | None) -> Host:
    name = state.spec.name
    if machine is not None:
        host = state.host(machine)
        if host is None:
            known = ", ".join(h.machine for h in state.hosts) or "none provisioned"
            msg = f"deployment {name!r} has no machine {machine!r} (machines: {known})"
            raise ConfigError(msg)
        return _remote(state, host)
    remote = [h for h in state.hosts if _is_remote(h)]
    if len(remote) == 1:
        return remote[0]
    if not remote:
        local = ", ".join(h.machine for h in state.hosts) or "none provisioned"
        msg = f"deployment {name!r} has no remote machine to SSH to (machines: {local})"
        raise ConfigError(msg)
    msg = (
        f"deployment {name!r} has {len(remote)} remote machines ({', '.join(h.machine for h in remote)}): "
        f"name one, e.g. 'fogros-dist ssh {name} {remote[0].machine}'"
    )
    raise ConfigError(msg)


def _remote(state: DeploymentState, host: Host) -> Host:
    if _is_remote(host):
        return host
    msg = (
        f"machine {host.machine!r} of deployment {state.spec.name!r} runs on this robot (provider "
        f"{host.provider}): there is nothing to SSH to; its files are in {host.workdir}"
    )
    raise ConfigError(msg)


def _is_remote(host: Host) -> bool:
    # Every SSH-reached machine (SSHHost, AWS) carries the SSH layer's connection record.
    return any(key.startswith(ENV_PREFIX) for key, _ in host.env)


def _split(words: list[str]) -> tuple[str, str | None, list[str]]:
    """``DEPLOYMENT [MACHINE] [-- COMMAND...]`` -> (deployment, machine, command)."""
    if "--" in words:
        split = words.index("--")
        before, command = words[:split], words[split + 1 :]
    else:
        before, command = words, []
    if not before or before[0].startswith("-"):
        msg = "ssh needs a deployment: fogros-dist ssh DEPLOYMENT [MACHINE] [-- COMMAND...]"
        raise ConfigError(msg)
    if len(before) > 2 or any(word.startswith("-") for word in before[1:]):
        msg = (
            f"ssh takes DEPLOYMENT [MACHINE], got {' '.join(before)!r}: put the command after '--', "
            f"e.g. fogros-dist ssh {before[0]} -- nvidia-smi"
        )
        raise ConfigError(msg)
    return before[0], (before[1] if len(before) == 2 else None), command
