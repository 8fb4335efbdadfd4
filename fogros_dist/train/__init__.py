"""Distributed data-parallel training on a fleet: torchrun's elastic agent on each machine, c10d
rendezvous on the head machine, gloo on CPU and NCCL where CUDA is present.

Modules, bottom up: ``options`` (the run's node range, processes per node, restarts, batch
scaling: parsed and checked, one line per bad value), ``context`` (what torchrun tells each
worker: rank, world size, backend), ``scaling`` (global batch and learning rate: the linear rule
with warm-up, or a fixed global batch), ``root_cause`` (one line from torch elastic's error
files), ``worker`` (the module torchrun starts per rank), ``local_fleet`` (the embedded default:
one torchrun agent per Local machine on this host, their lines streamed back, all stopped on
Ctrl-C). Nothing here writes an all-reduce or a scheduler: torch.distributed does.
"""
