"""Machines reached over SSH: connection, host keys, workspace sync, runtime bootstrap, supervision.

The layer under the SSH-based providers (SSHHost, and AWS once its instance runs):

- :mod:`~fogros_dist.remote.target`: who and where (``~/.ssh/config`` aliases honoured);
- :mod:`~fogros_dist.remote.hostkeys`: known_hosts checks, ``trust``;
- :mod:`~fogros_dist.remote.runner`: ``SSHRunner`` (paramiko), bounded connect retries;
- :mod:`~fogros_dist.remote.host_agent` / :mod:`~fogros_dist.remote.agent`: the agent on the host
  and the robot's calls to it;
- :mod:`~fogros_dist.remote.sync` / :mod:`~fogros_dist.remote.sftp_sync`: delta pushes;
- :mod:`~fogros_dist.remote.wheelhouse`, :mod:`~fogros_dist.remote.selfwheel`,
  :mod:`~fogros_dist.remote.bootstrap`: the offline runtime venv;
- :mod:`~fogros_dist.remote.process`: ``RemoteProcess`` (a ``RunningProcess`` on a host);
- :mod:`~fogros_dist.remote.machine`: ``RemoteMachines``, the provider verbs from a Host alone.

Nothing here imports paramiko until a connection is made.
"""

from __future__ import annotations

from fogros_dist.remote.machine import RemoteMachines, RemoteSettings, target_from_host
from fogros_dist.remote.runner import Completed, ConnectionLost, RetryPolicy, SSHRunner
from fogros_dist.remote.target import SSHTarget, resolve_target

__all__ = [
    "Completed",
    "ConnectionLost",
    "RemoteMachines",
    "RemoteSettings",
    "RetryPolicy",
    "SSHRunner",
    "SSHTarget",
    "resolve_target",
    "target_from_host",
]
