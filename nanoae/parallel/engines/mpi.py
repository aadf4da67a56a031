"""MpiEngine: collectives over NumPy arrays through mpi4py (ChainerMN's "flat" communicator)."""

from __future__ import annotations

from .base import Engine

__all__ = ["MpiEngine"]


class MpiEngine(Engine):
    """MPI's own collectives on host buffers; mpi4py reads each buffer's dtype itself."""

    name = "MPI"

    def __init__(self, mpi_comm):
        from mpi4py import MPI  # noqa: PLC0415  (optional dependency, imported with a job only)

        super().__init__(mpi_comm)
        self.comm, self.MPI = mpi_comm, MPI

    def allreduce_sum(self, buf) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def broadcast(self, buf, root: int = 0) -> None:
        self.comm.Bcast(buf, root=root)

    def reduce_scatter_sum(self, send, recv) -> None:
        self._check_parts("reduce_scatter_sum", send, recv.size)
        self.comm.Reduce_scatter_block(send, recv, op=self.MPI.SUM)

    def allgather(self, buf) -> None:
        self._check_parts("allgather", buf, buf.size // self.size)
        self.comm.Allgather(self.MPI.IN_PLACE, buf)

    def barrier(self) -> None:
        self.comm.Barrier()
