"""`ros2 fogdist`: the fogros-dist verbs as a ros2cli command (`ros2 fog` belongs to FogROS2)."""

from __future__ import annotations

import argparse
from typing import Any

from ros2cli.command import CommandExtension

from fogros_dist.cli.main import add_verbs, run_verb

__all__ = ["FogDistCommand"]


class FogDistCommand(CommandExtension):  # type: ignore[misc]
    """Offload nodes to cloud and lab machines: up, down, list, logs, demo."""

    def add_arguments(self, parser: argparse.ArgumentParser, cli_name: str) -> None:
        """Add the same verbs as the fogros-dist command."""
        del cli_name
        add_verbs(parser)

    def main(self, *, parser: argparse.ArgumentParser, args: Any) -> int:
        """Run the verb with the CLI's one-line error policy."""
        del parser
        return run_verb(args, prog="ros2 fogdist")
