"""Fixtures for the AWS provider: a real EC2 API (moto_server on 127.0.0.1) and fake credentials.

Nothing here reaches AWS or the internet: every client goes to the moto endpoint (also exported as
AWS_ENDPOINT_URL), the instance metadata service is switched off, and the robot-address discovery
is replaced by a function that fails the test if anything calls it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MOTO_SERVER = Path(sys.executable).with_name("moto_server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _public_amis(path: Path) -> Path:
    """moto's own AMI catalogue plus public_amis.json (AWS's GPU base images and a current Ubuntu,
    which moto's catalogue lacks), as moto's MOTO_AMIS_PATH takes it."""
    import gzip
    import json

    import moto

    catalogue = Path(moto.__file__).parent / "ec2" / "resources" / "amis.json.gz"
    amis = json.loads(gzip.decompress(catalogue.read_bytes()))
    amis += json.loads((Path(__file__).with_name("public_amis.json")).read_text())
    path.write_text(json.dumps(amis))
    return path


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto_server with instance type, AMI and key pair validation."""
    if not MOTO_SERVER.exists():
        pytest.skip(f"{MOTO_SERVER} is missing: pip install 'moto[server]'")
    port = _free_port()
    work = tmp_path_factory.mktemp("moto")
    env = dict(
        os.environ,
        MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="1",
        MOTO_ENABLE_AMI_VALIDATION="1",
        MOTO_ENABLE_KEYPAIR_VALIDATION="1",
        MOTO_AMIS_PATH=str(_public_amis(work / "amis.json")),
    )
    log = work / "moto_server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield endpoint
    finally:
        # Stopped by its own PID: nothing else is signalled.
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


AWS_ENV_KEYS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_REGION",
)


@pytest.fixture
def aws_env(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials, the moto endpoint and private config/state homes, in os.environ.

    moto is not reset between tests (a reset costs seconds of re-loading per region): tests keep
    apart by deployment name (``deployment`` fixture), and sweeps run in regions of their own.
    Returns the environment, for CLI subprocesses.
    """
    for key in AWS_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": moto_endpoint,
        # No credential or region lookups anywhere but here: no IMDS, no real config files.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws" / "credentials"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "FOGROS_DIST_HOME": str(tmp_path / "state"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def deployment() -> str:
    """A deployment name no other test uses (moto's account is shared by the session)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def no_address_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """The robot's public address is never looked up in tests (it would contact the internet)."""
    from fogros_dist.providers.aws import config

    def refuse(*, timeout: float = 5.0) -> str:
        del timeout
        msg = "test tried to discover the robot's public address: pass robot_cidr or allowed_cidr"
        raise AssertionError(msg)

    monkeypatch.setattr(config, "discover_public_cidr", refuse)
