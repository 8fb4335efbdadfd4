"""Where grasp_planner finds its model: the parameter, else the file shipped with the deployment,
else this machine's model cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogros_dist.workloads.grasp.node import MODEL_FILE, model_path


def test_the_shipped_model_comes_before_the_machines_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FOGROS_DIST_MODELS", str(cache))
    shipped = tmp_path / "files" / "grasp_planner"
    shipped.mkdir(parents=True)
    environ = {"FOGROS_DIST_NODE_FILES": str(shipped)}
    # Nothing shipped yet (the directory exists, the file does not): the cache.
    assert model_path("", environ=environ) == cache / MODEL_FILE
    (shipped / MODEL_FILE).write_bytes(b"weights")
    assert model_path("", environ=environ) == shipped / MODEL_FILE
    # The model parameter wins over both.
    assert model_path("~/mine.pt", environ=environ) == Path.home() / "mine.pt"
    # Not deployed by fogros_dist at all: the cache.
    assert model_path("", environ={}) == cache / MODEL_FILE
