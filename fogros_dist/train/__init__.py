"""Distributed data-parallel training on a fleet: torchrun's elastic agent on each machine, c10d
rendezvous on the head machine, gloo on CPU and NCCL where CUDA is present.

Modules, bottom up: ``options`` (the run's node range, processes per node, restarts, batch
scaling: parsed and checked, one line per bad value), ``context`` (what torchrun tells each
worker: rank, world size, backend), ``scaling`` (global batch and learning rate: the linear rule
with warm-up, or a fixed global batch), ``root_cause`` (one line from torch elastic's error
files), ``worker`` (the module torchrun starts per rank), ``local_fleet`` (the embedded default:
one torchrun agent per Local machine on this host, their lines streamed back, all stopped on
Ctrl-C), ``fleet_run`` + ``agent`` + ``fleet_mesh`` (a deployment file's machines, any provider,
with their own WireGuard mesh if asked), ``comm_hooks`` + ``compression_hooks`` + ``local_sgd`` +
``comm_meter`` (DDP comm hooks per run, local SGD's parameter averaging, their bytes and time
measured on the collectives), ``run_report`` +
``footprint`` (the run's figures, cost and CO2e as JSON and PNG). Nothing here writes an
all-reduce or a scheduler: torch.distributed does.
"""
