"""A rank frees its process group when it leaves (``leave_process_group``), not at interpreter exit.

Before, the workload's DDP wrapper kept the group alive in reference cycles past
``destroy_process_group``; a rank that left first then aborted at exit in about one run in ten
(SIGABRT in gloo's teardown) and the head's agent waited 300 s in torch elastic's exit barrier.
The test runs one real gloo rank in a fresh process, with the garbage collector off so that
nothing is collected by chance: after a DDP step in a function that has returned, the wrapper
must still be there (the cycle the fix is about), and after ``leave_process_group`` gone, with
the group.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

_RANK = textwrap.dedent(
    """
    import gc, json, os, sys
    gc.disable()
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from fogros_dist.train.context import DistContext, leave_process_group
    from fogros_dist.train.data_parallel import data_parallel
    from fogros_dist.workloads.grasp.model import GQCNN, ModelConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo")

    def one_step():
        model = GQCNN(ModelConfig())
        size = model.config.patch.size
        parallel = data_parallel(
            model, range(8), context=DistContext(rank=0, world_size=1), device=torch.device("cpu"),
            batch_size=8, learning_rate=1e-3, seed=0, keep_global_batch=True,
        )
        with parallel.meter.step():
            parallel.model(torch.zeros(8, 1, size, size), torch.zeros(8)).sum().backward()

    def wrappers():
        return sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())

    one_step()
    before = wrappers()
    leave_process_group()
    print(json.dumps({"before": before, "after": wrappers(), "joined": dist.is_initialized()}))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_rank_frees_its_process_group_when_it_leaves_not_at_exit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RANK, str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["before"] == 1, "the DDP wrapper outlived its function: the cycle this guards against"
    assert found == {"before": 1, "after": 0, "joined": False}
