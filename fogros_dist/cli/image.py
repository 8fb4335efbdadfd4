"""`fogros-dist image NAME MACHINE [--name AMI_NAME]`: save a running machine as a reusable image.

The provider makes the image (AWS: an AMI, waited for until available, tagged, and recorded on
this robot), so a later machine starts from it with ``ami_name = "AMI_NAME"`` instead of
installing everything again.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Protocol, runtime_checkable

from fogros_dist.deploy.state import StateStore
from fogros_dist.errors import ConfigError
from fogros_dist.registry import get_provider
from fogros_dist.spec import Host

__all__ = ["ImageMaker", "add_parser", "run"]


class _Made(Protocol):
    image_id: str
    name: str
    region: str


@runtime_checkable
class ImageMaker(Protocol):
    """A provider that can save a machine as an image (``Capabilities.image``)."""

    def image(self, host: Host, *, name: str, reboot: bool = False) -> _Made:
        """Make an image of ``host`` called ``name``; wait until it can be used."""


def add_parser(sub: Any) -> None:
    """Register the verb."""
    parser = sub.add_parser("image", help="save a running machine as an image (AWS: an AMI) for reuse")
    parser.add_argument("deployment", help="the deployment's name (see 'fogros-dist list')")
    parser.add_argument("machine", help="the machine to image")
    parser.add_argument("--name", help="the image's name (default fogros_dist-DEPLOYMENT-MACHINE-DATE)")
    parser.add_argument(
        "--reboot",
        action="store_true",
        help="let the provider reboot the machine for a consistent disk (stops its nodes meanwhile)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Image the machine and print how to use the image."""
    state = StateStore().load(args.deployment)
    host = state.host(args.machine)
    if host is None:
        known = ", ".join(h.machine for h in state.hosts) or "none"
        msg = f"deployment {args.deployment!r} has no running machine {args.machine!r} (known: {known})"
        raise ConfigError(msg)
    provider = get_provider(host.provider)
    if not provider.capabilities.image or not isinstance(provider, ImageMaker):
        msg = (
            f"machine {host.machine!r}: provider {host.provider!r} cannot make images: "
            f"image a machine of provider 'aws'"
        )
        raise ConfigError(msg)
    name = args.name or f"fogros_dist-{args.deployment}-{args.machine}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"imaging machine {host.machine} as {name!r} (this takes minutes)", file=sys.stderr, flush=True)
    made = provider.image(host, name=name, reboot=args.reboot)
    print(f"image {made.image_id} ({made.name}) is available in {made.region}: use ami_name = {made.name!r}")
    return 0
