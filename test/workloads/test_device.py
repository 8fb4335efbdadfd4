"""Training picks the GPU where torch sees one and says so clearly where it does not."""

from __future__ import annotations

import pytest
import torch

from fogros_dist.errors import ConfigError
from fogros_dist.workloads.device import resolve_device


def test_auto_follows_what_torch_sees() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without a GPU")
def test_cuda_without_a_gpu_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"device 'cuda' was asked for but torch sees no GPU here"):
        resolve_device("cuda")


def test_unknown_device_is_named() -> None:
    with pytest.raises(ConfigError, match=r"device 'tpu' is not supported: use one of auto, cpu, cuda"):
        resolve_device("tpu")
