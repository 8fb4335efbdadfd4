"""Host-wide ROS domain claims (providers/local/claims.py): real files, real processes, real users.

Every test uses a claims directory of its own (DomainClaims(root)), so concurrent runs on this host
never see each other's claims here; the end-to-end test of two homes uses the host's real one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import other_user
import pytest

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.base import ProvisionContext
from fogros_dist.providers.local.claims import DomainClaims
from fogros_dist.providers.local.provider import LocalProvider
from fogros_dist.spec import MachineSpec

CANDIDATES = list(range(120, 126))


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path lies under a 0700 directory)."""
    why = other_user.unavailable()
    if why:
        pytest.skip(why)
    path = Path(tempfile.mkdtemp(prefix="fogros-claims-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _claims(tmp_path: Path) -> DomainClaims:
    return DomainClaims(tmp_path / "host" / "domains")


def _record_host(state_file: Path, machine: str, domain: int) -> None:
    """What the engine writes once the Host exists (only the fields the claims read)."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(
        json.dumps({"hosts": [{"machine": machine, "env": [["ROS_DOMAIN_ID", str(domain)]]}]})
    )


def _claim_in_child(claims: DomainClaims, state_file: Path, machine: str = "gpu") -> int:
    """Claim from a process that then exits: its claim's owner is gone afterwards."""
    code = (
        "import sys; from pathlib import Path\n"
        "from fogros_dist.providers.local.claims import DomainClaims\n"
        f"print(DomainClaims(Path({str(claims.root)!r})).claim(state_file=Path({str(state_file)!r}),"
        f" deployment='other', machine={machine!r}, candidates={CANDIDATES!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return int(done.stdout)


def test_two_homes_get_distinct_domains_and_a_release_frees_one(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    a = claims.claim(
        state_file=tmp_path / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    b = claims.claim(
        state_file=tmp_path / "b/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    assert a != b
    # The same machine of the same deployment asking again keeps its domain.
    again = claims.claim(
        state_file=tmp_path / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    assert again == a
    claims.release(state_file=tmp_path / "a/state.json", machine="gpu")
    assert set(claims.held()) == {b}
    root = claims.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o1777
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o1777
    claim_file = next(root.glob("*.claim"))
    assert stat.S_IMODE(claim_file.stat().st_mode) == 0o644
    assert json.loads(claim_file.read_text())["pid"] == os.getpid()


def test_avoided_domains_are_skipped(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    got = claims.claim(
        state_file=tmp_path / "a/state.json",
        deployment="d",
        machine="gpu",
        candidates=CANDIDATES,
        avoid=frozenset({120, 121}),
    )
    assert got == 122


def test_a_stale_claim_is_reclaimed(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    # Its owner exited and its deployment recorded nothing: stale.
    first = _claim_in_child(claims, tmp_path / "gone/state.json")
    mine = claims.claim(
        state_file=tmp_path / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    assert mine == first
    assert len(list(claims.root.glob("*.claim"))) == 1


def test_a_claim_whose_deployment_is_recorded_outlives_its_owner(tmp_path: Path) -> None:
    # The supervisor crashed, the deployment's processes may still run: the domain stays taken.
    claims = _claims(tmp_path)
    orphan_state = tmp_path / "orphan/state.json"
    first = _claim_in_child(claims, orphan_state)
    _record_host(orphan_state, "gpu", first)
    mine = claims.claim(
        state_file=tmp_path / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    assert mine != first
    # Once `down` removed its record, the claim is stale.
    orphan_state.unlink()
    assert set(claims.held()) == {mine}


def test_a_claim_whose_record_cannot_be_read_stands(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    hidden = tmp_path / "hidden/state.json"
    first = _claim_in_child(claims, hidden)
    hidden.parent.mkdir()
    hidden.mkdir()  # a directory where the file should be: unreadable, so not provably stale
    assert first in claims.held()


def test_a_half_written_claim_holds_its_domain(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    claims.root.mkdir(parents=True)
    (claims.root / "120.4242.claim").write_bytes(b"")
    got = claims.claim(
        state_file=tmp_path / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    assert got == 121


def test_an_explicit_domain_held_elsewhere_is_refused_by_name(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    claims.claim(state_file=tmp_path / "a/state.json", deployment="first", machine="gpu", candidates=[130])
    with pytest.raises(ProvisionError, match=r"no free ROS domain in 130 .*held by deployment 'first'"):
        claims.claim(
            state_file=tmp_path / "b/state.json", deployment="second", machine="gpu", candidates=[130]
        )


def test_a_claims_directory_that_is_not_sticky_and_not_ours_is_refused(shared_tmp: Path) -> None:
    root = shared_tmp / "host"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    code = (
        "from pathlib import Path\n"
        "from fogros_dist.providers.local.claims import DomainClaims\n"
        f"DomainClaims(Path({str(root / 'domains')!r})).claim(state_file=Path('/nonexistent/state.json'),"
        f" deployment='d', machine='gpu', candidates=[120])\n"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "is not sticky and world-writable" in done.stderr, done.stderr
    assert "chmod 1777" in done.stderr


def test_another_users_claim_is_respected_and_not_ours_to_remove(shared_tmp: Path) -> None:
    claims = _claims(shared_tmp)
    mine = claims.claim(
        state_file=shared_tmp / "a/state.json", deployment="d", machine="gpu", candidates=CANDIDATES
    )
    theirs_home = shared_tmp / "nobody-home"
    theirs_home.mkdir()
    os.chown(theirs_home, 65534, 65534)
    code = (
        "import time; from pathlib import Path\n"
        "from fogros_dist.providers.local.claims import DomainClaims\n"
        f"claims = DomainClaims(Path({str(claims.root)!r}))\n"
        f"print(claims.claim(state_file=Path({str(theirs_home / 'state.json')!r}),"
        f" deployment='d', machine='gpu', candidates={CANDIDATES!r}), flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        theirs = int(other.stdout.readline())
        assert theirs != mine
        held = claims.held()
        assert held[theirs].uid == 65534
        # Ours to release, theirs not: a release here leaves their claim alone.
        claims.release(state_file=theirs_home / "state.json", machine="gpu")
        assert theirs in claims.held()
    finally:
        other.kill()
        other.wait()


def test_the_local_provider_claims_at_create_and_releases_at_terminate(tmp_path: Path) -> None:
    claims = _claims(tmp_path)
    provider = LocalProvider(claims=claims)
    state_dir = tmp_path / "home/deployments/d1"
    state_dir.mkdir(parents=True)
    ctx = ProvisionContext(deployment="d1", state_dir=state_dir, used_domain_ids=frozenset({120}))
    host = provider.create(MachineSpec(name="gpu"), ctx)
    domain = int(dict(host.env)["ROS_DOMAIN_ID"])
    assert domain == 121
    assert claims.held()[domain].state_file == str(state_dir / "state.json")
    workdir = Path(host.workdir)
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "logs").stat().st_mode) == 0o700
    provider.terminate(host)
    assert claims.held() == {}


def test_a_machine_name_that_leaves_the_deployment_directory_is_refused(tmp_path: Path) -> None:
    provider = LocalProvider(claims=_claims(tmp_path))
    state_dir = tmp_path / "home/deployments/d1"
    state_dir.mkdir(parents=True)
    ctx = ProvisionContext(deployment="d1", state_dir=state_dir)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for name in ("../../x", "..", "a/b", "x\0y"):
        with pytest.raises(Exception, match=r"machine name .* is invalid"):
            provider.create(MachineSpec(name=name), ctx)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
