"""The dead-man switch: a cloud machine powers itself off when the robot goes silent, or at its TTL.

It runs *on the machine*, so it works when the robot crashed, lost its network or was switched
off: nothing is left billing because nobody ran `down` (FogROS2 issue #32). A small POSIX shell
script checks the modification time of a heartbeat file that the robot refreshes over SSH; a
systemd timer runs it every 30 s. The instance is launched with shutdown behaviour "terminate",
so powering off ends it for good (and deletes its root volume).

Everything the script reads is configurable through its environment (heartbeat path, limits,
the power-off command), so a test runs the very same script on this machine with a short limit
and a harmless power-off command.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = [
    "DEADMAN_ENV",
    "DEADMAN_SCRIPT",
    "HEARTBEAT",
    "DeadmanConfig",
    "deadman_files",
    "heartbeat_command",
    "script_text",
]

DEADMAN_SCRIPT = "/usr/local/sbin/fogros-deadman"
# /etc/fogros_dist is the hook directory the fogros_dist images create (cloud_images/scripts).
DEADMAN_ENV = "/etc/fogros_dist/deadman.env"
HEARTBEAT = "/var/lib/fogros_dist/heartbeat"
SERVICE = "/etc/systemd/system/fogros-deadman.service"
TIMER = "/etc/systemd/system/fogros-deadman.timer"

_SCRIPT = """\
#!/bin/sh
# fogros_dist dead-man switch. Powers the machine off when the heartbeat file has not been touched
# for FOGROS_DEADMAN_TIMEOUT_S seconds, or once FOGROS_DEADMAN_DEADLINE (Unix time, 0 = none) has
# passed. One check per run (the systemd timer runs it); FOGROS_DEADMAN_INTERVAL_S > 0 loops.
set -u
heartbeat="${FOGROS_DEADMAN_HEARTBEAT:-/var/lib/fogros_dist/heartbeat}"
timeout_s="${FOGROS_DEADMAN_TIMEOUT_S:-900}"
deadline="${FOGROS_DEADMAN_DEADLINE:-0}"
poweroff="${FOGROS_DEADMAN_POWEROFF:-shutdown -h now}"
interval="${FOGROS_DEADMAN_INTERVAL_S:-0}"

log() { echo "fogros-deadman: $*"; }

# Succeeds while the machine may keep running.
alive() {
  now=$(date +%s)
  if [ "$deadline" -gt 0 ] && [ "$now" -ge "$deadline" ]; then
    log "TTL reached (deadline $deadline, now $now): powering off"
    return 1
  fi
  if ! last=$(stat -c %Y "$heartbeat" 2>/dev/null); then
    # No heartbeat file yet: count from boot, so a robot that never connects still ends it.
    last=$((now - $(cut -d. -f1 /proc/uptime)))
  fi
  silent=$((now - last))
  # Whole seconds on both sides: -gt (not -ge) so it never fires before the limit.
  if [ "$silent" -gt "$timeout_s" ]; then
    log "no heartbeat in $heartbeat for ${silent}s (limit ${timeout_s}s): powering off"
    return 1
  fi
  return 0
}

while alive; do
  if [ "$interval" = 0 ]; then
    exit 0
  fi
  sleep "$interval"
done
exec sh -c "$poweroff"
"""

_SERVICE = f"""\
[Unit]
Description=fogros_dist dead-man switch: power off when the robot goes silent or the TTL passes

[Service]
Type=oneshot
EnvironmentFile={DEADMAN_ENV}
ExecStart={DEADMAN_SCRIPT}
"""

# OnBootSec leaves cloud-init time to write this instance's settings first: an image made from a
# fogros_dist machine still carries the old machine's (expired) ones.
_TIMER = """\
[Unit]
Description=Run the fogros_dist dead-man switch every 30 seconds

[Timer]
OnBootSec=2min
OnUnitActiveSec=30s
AccuracySec=5s

[Install]
WantedBy=timers.target
"""


@dataclass(frozen=True, kw_only=True)
class DeadmanConfig:
    """What the switch checks and what it runs.

    ``deadline`` is Unix time (0: no TTL). ``interval_s`` 0 means one check per run (systemd
    timer); tests run the script in a loop with a short interval instead.
    """

    timeout_s: int
    deadline: int = 0
    heartbeat: str = HEARTBEAT
    poweroff: str = "shutdown -h now"
    interval_s: float = 0

    def environment(self) -> dict[str, str]:
        """The script's environment variables for this configuration."""
        interval = "0" if not self.interval_s else f"{self.interval_s:g}"
        return {
            "FOGROS_DEADMAN_HEARTBEAT": self.heartbeat,
            "FOGROS_DEADMAN_TIMEOUT_S": str(self.timeout_s),
            "FOGROS_DEADMAN_DEADLINE": str(self.deadline),
            "FOGROS_DEADMAN_POWEROFF": self.poweroff,
            "FOGROS_DEADMAN_INTERVAL_S": interval,
        }


def script_text() -> str:
    """The dead-man switch script (POSIX sh, GNU stat/date as on Ubuntu)."""
    return _SCRIPT


def _env_file(config: DeadmanConfig) -> str:
    # systemd EnvironmentFile syntax: double quotes keep a command with spaces in one value.
    lines = [f'{key}="{value}"' for key, value in config.environment().items()]
    return "# Written by fogros_dist at launch; read by fogros-deadman.service.\n" + "\n".join(lines) + "\n"


def deadman_files(config: DeadmanConfig) -> tuple[tuple[str, str, str], ...]:
    """The files the user-data writes: (path, content, permissions)."""
    if '"' in config.poweroff or "\\" in config.poweroff:
        msg = f"dead-man power-off command {config.poweroff!r} must not contain quotes or backslashes"
        raise ValueError(msg)
    return (
        (DEADMAN_SCRIPT, script_text(), "0755"),
        (DEADMAN_ENV, _env_file(config), "0644"),
        (SERVICE, _SERVICE, "0644"),
        (TIMER, _TIMER, "0644"),
    )


def heartbeat_command(heartbeat: str = HEARTBEAT) -> tuple[str, ...]:
    """The argv the robot runs on the machine (over SSH) to say "still here"."""
    path = shlex.quote(heartbeat)
    # The file belongs to the SSH user once cloud-init's runcmd ran; before that only root may touch it.
    return ("sh", "-c", f"touch {path} 2>/dev/null || sudo -n touch {path}")
