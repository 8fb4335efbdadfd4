"""`fogros-dist trust HOST`: record an SSH host's key, after showing its fingerprint.

fogros_dist never accepts an unknown host key on its own (FogROS2 auto-accepted every key). This
verb is the explicit first contact: it connects (no login), prints the key's fingerprint, checks
it against ``--fingerprint`` when given (compare with the host's console, or its cloud-init
output), and appends it to the known_hosts file. A host whose recorded key differs is refused.

A host behind jump hosts (``--proxy-jump``, or ProxyJump in the SSH config) is reached through
them, logging in to each with its key (whose own host key must already be trusted: trust the
bastion first); only the last host's key is fetched, without logging in.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from fogros_dist.errors import ProvisionError
from fogros_dist.remote.hostkeys import HostKey, add_known_host, fetch_host_key
from fogros_dist.remote.runner import SSHRunner
from fogros_dist.remote.target import DEFAULT_KNOWN_HOSTS, DEFAULT_SSH_CONFIG, SSHTarget, resolve_target

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("trust", help="record an SSH host's key (shows its fingerprint first)")
    parser.add_argument("host", help="an address, a host name or an alias from the SSH config")
    parser.add_argument("--port", type=int, help="SSH port (default: the SSH config's, else 22)")
    parser.add_argument("--user", help="the user you will log in as (only shown in the hint)")
    parser.add_argument(
        "--known-hosts",
        default=DEFAULT_KNOWN_HOSTS,
        help=f"file to record it in (default {DEFAULT_KNOWN_HOSTS})",
    )
    parser.add_argument("--ssh-config", default=DEFAULT_SSH_CONFIG, help="OpenSSH client config for aliases")
    parser.add_argument(
        "--proxy-jump",
        default=None,
        metavar="JUMPS",
        help="jump hosts to reach it through, as ssh -J takes them (default: the SSH config's ProxyJump)",
    )
    parser.add_argument("--identity-file", default=None, help="private key for logging in to the jump hosts")
    parser.add_argument("--fingerprint", help="refuse unless the key has this SHA256:... fingerprint")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Fetch the key, show it, check it, record it."""
    target = resolve_target(
        machine=args.host,
        host=args.host,
        user=args.user,
        port=args.port,
        identity_file=args.identity_file,
        known_hosts=args.known_hosts,
        ssh_config=args.ssh_config,
        proxy_jump=args.proxy_jump,
    )
    name = target.known_hosts_name
    key = _fetch(target)
    via = f" (via {', '.join(jump.where for jump in target.jumps)})" if target.jumps else ""
    print(f"{name} presents {key.describe()}{via}")
    if args.fingerprint and args.fingerprint != key.fingerprint:
        msg = (
            f"{name} presents {key.fingerprint}, not the expected {args.fingerprint}: not recorded; "
            f"check the key on the host's console (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)"
        )
        raise ProvisionError(msg)
    if add_known_host(target.known_hosts, name=name, key=key):
        print(f"recorded in {target.known_hosts}")
    else:
        print(f"already trusted in {target.known_hosts}")
    hint = f", user={args.user!r}" if args.user else ""
    port = f", port={target.port}" if target.port != 22 else ""
    jump = f", proxy_jump={args.proxy_jump!r}" if args.proxy_jump else ""
    print(f"use it with: SSHHost('<name>', {args.host!r}{hint}{port}{jump})")
    return 0


def _fetch(target: SSHTarget) -> HostKey:
    """The key ``target`` presents: directly, or over a channel through its (verified) jump hosts."""
    if not target.jumps:
        return fetch_host_key(target.hostname, target.port)
    last = target.jumps[-1]
    # A runner for the last jump host, reached through the ones before it: each hop verified.
    via = SSHRunner(dataclasses.replace(last, jumps=target.jumps[:-1]))
    try:
        channel = via.open_tunnel(host=target.hostname, port=target.port, origin=("127.0.0.1", 0))
        return fetch_host_key(target.hostname, target.port, sock=channel)
    finally:
        via.close()
