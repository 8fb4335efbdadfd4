"""The dead-man switch script, run for real on this machine with short limits and a harmless power-off."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fogros_dist.providers.aws.deadman import DeadmanConfig, deadman_files, heartbeat_command, script_text


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fogros-deadman"
    path.write_text(script_text())
    path.chmod(0o755)
    return path


def _run(script: Path, config: DeadmanConfig, *, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **config.environment()}
    return subprocess.run(
        [str(script)], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _poweroff(marker: Path) -> str:
    # Records when it ran; quotes-free, as the env file requires.
    return f"date +%s.%N > {marker}"


def test_powers_off_after_silence_and_not_before(script: Path, tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    marker = tmp_path / "powered-off"
    heartbeat.touch()
    last_beat = heartbeat.stat().st_mtime
    config = DeadmanConfig(timeout_s=2, heartbeat=str(heartbeat), poweroff=_poweroff(marker), interval_s=0.1)
    result = _run(script, config)
    assert result.returncode == 0, result.stderr
    fired = float(marker.read_text())
    assert fired - last_beat >= 2.0  # never before the limit
    assert fired - last_beat < 3.5
    assert "no heartbeat" in result.stdout


def test_heartbeats_keep_it_alive_until_the_ttl(script: Path, tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    marker = tmp_path / "powered-off"
    heartbeat.touch()
    deadline = int(time.time()) + 3
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.3):
            heartbeat.touch()

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        config = DeadmanConfig(
            timeout_s=1,
            deadline=deadline,
            heartbeat=str(heartbeat),
            poweroff=_poweroff(marker),
            interval_s=0.1,
        )
        result = _run(script, config)
    finally:
        stop.set()
        beater.join()
    fired = float(marker.read_text())
    # Alive well past the 1 s silence limit thanks to the heartbeats; off at the TTL, not before.
    assert deadline <= fired < deadline + 1.5
    assert "TTL reached" in result.stdout


def test_one_check_per_run_as_the_systemd_timer_runs_it(script: Path, tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    marker = tmp_path / "powered-off"
    heartbeat.touch()
    config = DeadmanConfig(timeout_s=60, heartbeat=str(heartbeat), poweroff=_poweroff(marker))
    assert _run(script, config).returncode == 0
    assert not marker.exists()
    stale = time.time() - 120
    os.utime(heartbeat, (stale, stale))
    assert _run(script, config).returncode == 0
    assert marker.exists()


def test_missing_heartbeat_counts_from_boot(script: Path, tmp_path: Path) -> None:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    marker = tmp_path / "powered-off"
    config = DeadmanConfig(
        timeout_s=max(1, int(uptime) - 5), heartbeat=str(tmp_path / "absent"), poweroff=_poweroff(marker)
    )
    _run(script, config)
    assert marker.exists()


def test_units_and_environment_file(tmp_path: Path) -> None:
    files = {
        path: (text, mode) for path, text, mode in deadman_files(DeadmanConfig(timeout_s=900, deadline=17))
    }
    env_text, _ = files["/etc/fogros_dist/deadman.env"]
    assert 'FOGROS_DEADMAN_TIMEOUT_S="900"' in env_text
    assert 'FOGROS_DEADMAN_DEADLINE="17"' in env_text
    assert 'FOGROS_DEADMAN_POWEROFF="shutdown -h now"' in env_text
    assert files["/usr/local/sbin/fogros-deadman"][1] == "0755"
    service, _ = files["/etc/systemd/system/fogros-deadman.service"]
    assert "EnvironmentFile=/etc/fogros_dist/deadman.env" in service
    timer, _ = files["/etc/systemd/system/fogros-deadman.timer"]
    assert "OnUnitActiveSec=30s" in timer
    with pytest.raises(ValueError, match="quotes"):
        deadman_files(DeadmanConfig(timeout_s=1, poweroff='sh -c "x"'))
    # The robot's heartbeat command refreshes that same file.
    heartbeat = tmp_path / "hb"
    subprocess.run(heartbeat_command(str(heartbeat)), check=True)
    assert heartbeat.exists()
