"""Provider ``ssh`` options: every bad value is named with its fix, before anything is contacted."""

from __future__ import annotations

import pytest

from fogros_dist.errors import ConfigError
from fogros_dist.machines import SSHHost
from fogros_dist.providers.ssh.options import parse_options
from fogros_dist.registry import get_provider, provider_names
from fogros_dist.spec import MachineSpec


def _machine(**options: object) -> MachineSpec:
    return MachineSpec(name="gpu", provider="ssh", options=tuple(sorted(options.items())))  # type: ignore[arg-type]


def test_registry_and_the_launch_file_helper() -> None:
    assert "ssh" in provider_names()
    provider = get_provider("ssh")
    assert provider.name == "ssh"
    assert provider.capabilities.remote
    spec = SSHHost("gpu", "lab-gpu", user="ubuntu", port=2222, trust_new_host=True, torch=False, sync="sftp")
    assert spec.provider == "ssh"
    assert dict(spec.options) == {
        "host": "lab-gpu",
        "user": "ubuntu",
        "port": 2222,
        "trust_new_host": True,
        "torch": False,
        "sync": "sftp",
    }
    # The host defaults to the machine's name (an alias in ~/.ssh/config).
    assert dict(SSHHost("lab-gpu").options) == {"host": "lab-gpu"}
    parsed = parse_options(spec)
    assert (parsed.host, parsed.user, parsed.port, parsed.trust_new_host) == ("lab-gpu", "ubuntu", 2222, True)
    assert (parsed.settings.remote_dir, parsed.settings.python, parsed.settings.ros_setup) == (
        "~/.fogros_dist",
        "python3",
        "auto",
    )
    assert parsed.settings.sync == "sftp"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"host": "h", "gpus": 2},
            r"machine 'gpu': option 'gpus' is not supported by provider 'ssh' "
            r"\(supported: .*bridge_port.*trust_new_host",
        ),
        (
            {},
            r"machine 'gpu': provider 'ssh' needs option host \(an address, or an alias from "
            r"~/\.ssh/config\): e\.g\. SSHHost\('gpu', 'lab-gpu'\)",
        ),
        ({"host": "  "}, r"provider 'ssh' needs option host"),
        (
            {"host": "h", "port": "22"},
            r"machine 'gpu': option port = '22' is invalid: use a TCP port, 1\.\.65535",
        ),
        ({"host": "h", "port": True}, r"option port = True is invalid"),
        ({"host": "h", "port": 0}, r"machine 'gpu': option port = 0 is out of range: use 1\.\.65535"),
        ({"host": "h", "bridge_port": 70000}, r"option bridge_port = 70000 is out of range: use 1\.\.65535"),
        (
            {"host": "h", "trust_new_host": "yes"},
            r"option trust_new_host = 'yes' is invalid: use true or false",
        ),
        ({"host": "h", "torch": 1}, r"option torch = 1 is invalid: use true or false"),
        ({"host": "h", "domain_id": 300}, r"option domain_id = 300 is out of range: use 0\.\.232"),
        ({"host": "h", "sync": "scp"}, r"option sync = 'scp' is invalid: use 'auto', 'rsync' or 'sftp'"),
        (
            {"host": "h", "python": ""},
            r"option python is empty: use a Python 3\.10\+ interpreter on the host",
        ),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_provider("ssh").validate(_machine(**options))
