"""The bridge warns where the host's TCP congestion control is BBR, and only there."""

from __future__ import annotations

from pathlib import Path

from fogros_dist.net.tcp_congestion import DEFAULT_SETTING, congestion_control_warning


def test_bbr_gets_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    setting = tmp_path / "tcp_congestion_control"
    setting.write_text("bbr\n")
    line = congestion_control_warning(setting)
    assert "is bbr" in line
    assert "net.ipv4.tcp_congestion_control=cubic" in line
    assert "\n" not in line


def test_loss_based_and_unreadable_settings_say_nothing(tmp_path: Path) -> None:
    setting = tmp_path / "tcp_congestion_control"
    for name in ("cubic\n", "reno\n"):
        setting.write_text(name)
        assert congestion_control_warning(setting) == ""
    assert congestion_control_warning(tmp_path / "missing") == ""


def test_this_hosts_own_setting_agrees_with_the_kernel() -> None:
    # The real file: the warning appears exactly when the kernel's default is a BBR.
    if not DEFAULT_SETTING.exists():
        return
    name = DEFAULT_SETTING.read_text().strip()
    assert bool(congestion_control_warning()) == name.startswith("bbr")
