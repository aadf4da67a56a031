"""Engines: the collectives of a data-parallel job, one class per way of moving arrays.

``communicator.Communicator`` knows the job (ranks, machines, GPUs, faults);
an engine moves one kind of array between its ranks. Each engine is a small
class with the same five methods (``base.Engine``):

    allreduce_sum(buf)            buf <- sum over ranks of buf                 (in place)
    broadcast(buf, root=0)        buf <- rank root's buf                       (in place)
    reduce_scatter_sum(send, recv)  recv <- sum over ranks of send[rank*c:(rank+1)*c],  c = recv.size
    allgather(buf)                buf[r*c:(r+1)*c] <- rank r's, for every r     (in place)
    barrier()                     wait until every rank gets here

The engines, chosen by the array module of the arrays they move (``ENGINES``):

* ``mpi.MpiEngine``: NumPy arrays, through mpi4py (ChainerMN's "flat" communicator);
* ``nccl.NcclEngine``: CuPy arrays, through NCCL (ChainerMN's "pure_nccl"), which
  MPI only bootstraps; the arrays never leave the GPU.

A third engine (Gloo, UCC, a shared-memory one) is a new module with a class
that subclasses ``Engine``, and one entry in ``ENGINES``; nothing else changes.
"""

from __future__ import annotations

from .base import Engine
from .mpi import MpiEngine
from .nccl import NCCL_MISSING, NcclEngine, check_own_devices

__all__ = ["Engine", "MpiEngine", "NcclEngine", "ENGINES", "engine_for", "NCCL_MISSING",
           "check_own_devices"]

# array module name -> the engine that moves its arrays
ENGINES: dict[str, type[Engine]] = {"numpy": MpiEngine, "cupy": NcclEngine}


def engine_for(module_name: str) -> type[Engine]:
    """The engine class for arrays of the module named ``module_name`` ("numpy", "cupy")."""
    try:
        return ENGINES[module_name]
    except KeyError:
        raise ValueError(f"data parallel: no engine moves {module_name} arrays; the engines "
                         f"are {sorted(ENGINES)} (nanoae.parallel.engines.ENGINES)") from None
