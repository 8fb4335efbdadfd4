"""Node executables shipped with fogros_dist (`ros2 run fogros_dist <name>`, or CloudNode)."""

from __future__ import annotations
