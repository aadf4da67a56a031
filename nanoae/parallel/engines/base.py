"""The interface every engine implements (see the package docstring)."""

from __future__ import annotations

__all__ = ["Engine"]


class Engine:
    """Collectives over the arrays of one array module, between the ranks of one MPI job.

    mpi_comm: the job's mpi4py communicator (an engine may bootstrap its own
    library through it, as NCCL does). Every rank must call each collective,
    in the same order, with buffers of the same size and dtype. Buffers are
    flat (1-D) and contiguous; each method says which it reads and writes.
    """

    name = "?"

    def __init__(self, mpi_comm):
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    def allreduce_sum(self, buf) -> None:
        """buf <- the element-wise sum of every rank's buf."""
        raise NotImplementedError

    def broadcast(self, buf, root: int = 0) -> None:
        """buf <- rank ``root``'s buf."""
        raise NotImplementedError

    def reduce_scatter_sum(self, send, recv) -> None:
        """recv <- the sum over ranks of their send[rank * c : (rank + 1) * c], c = recv.size.

        ``send`` holds size * c elements; rank r receives the sum of part r.
        ``send`` and ``recv`` must not overlap.
        """
        raise NotImplementedError

    def allgather(self, buf) -> None:
        """Each rank r holds its part in buf[r * c : (r + 1) * c] (c = buf.size / size);
        afterwards every rank's buf holds every part."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Return on each rank only once every rank has called it."""
        raise NotImplementedError

    def _check_parts(self, what: str, whole, part_size: int) -> None:
        if whole.size != part_size * self.size:
            raise ValueError(f"{self.name} {what}: the whole buffer must hold {self.size} ranks x "
                             f"{part_size} elements = {self.size * part_size}, got {whole.size}")
