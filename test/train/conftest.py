"""Fixtures for the fleet training tests: the remote layer's namespace SSH hosts (shared lab)."""

from __future__ import annotations

import sys
from pathlib import Path

# The namespace lab lives with the remote layer's tests; every directory shares one per session.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "remote"))
# A lab's own rosbag2 demonstrations (lab_bags.py), for the policy's fleet runs.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads" / "policy"))

from ssh_fixtures import ssh_lab, wheel_cache

__all__ = ["ssh_lab", "wheel_cache"]
