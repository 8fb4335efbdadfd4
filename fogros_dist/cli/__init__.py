"""Robot-side command line: `fogros-dist` and the same verbs as `ros2 fogdist`."""

from __future__ import annotations
