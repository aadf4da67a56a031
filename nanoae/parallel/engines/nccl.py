"""NcclEngine: collectives over CuPy arrays through NCCL (ChainerMN's "pure_nccl").

MPI only bootstraps it: rank 0 draws NCCL's unique id, MPI broadcasts it, and
every rank joins one NCCL communicator. Collectives are queued on the current
CUDA stream, in order with the kernels that computed the gradients and those
of the optimizer that read them: nothing waits on the host.

(No GPU was available while this was written: this class follows CuPy's
documented ``cupy.cuda.nccl`` API and is tested against a fake of it,
tests/helpers/fake_nccl.py, which reads and writes the buffers at the pointers given.)
"""

from __future__ import annotations

import socket

import numpy

from .base import Engine

__all__ = ["NcclEngine", "NCCL_MISSING", "check_own_devices"]

NCCL_MISSING = (
    "CuPy cannot load the NCCL library, which data parallel on several GPUs needs; "
    "CuPy's wheels load NCCL as a separate library, so install NCCL itself: "
    "python -m cupyx.tools.install_library --library nccl --cuda 12.x (13.x for "
    "cupy-cuda13x; CuPy's own installer), or conda install -c conda-forge nccl, or "
    "NVIDIA's libnccl2 package for your system; then check that "
    "python -c \"from cupy.cuda import nccl; print(nccl.get_version())\" prints a version")


class NcclEngine(Engine):
    """NCCL's collectives on device buffers (float32 or float64, contiguous)."""

    name = "NCCL"

    def __init__(self, mpi_comm):
        import cupy  # noqa: PLC0415  (only on the GPU path)

        try:
            from cupy.cuda import nccl  # noqa: PLC0415
        except ImportError:
            nccl = None
        if nccl is None or not getattr(nccl, "available", True):
            raise RuntimeError(NCCL_MISSING)
        super().__init__(mpi_comm)
        self.cupy, self.nccl = cupy, nccl
        device = cupy.cuda.Device()
        check_own_devices(mpi_comm.allgather((socket.gethostname(), device.pci_bus_id)), self.rank)
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = mpi_comm.bcast(uid, root=0)  # NCCL needs one id, drawn once; MPI carries it
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.types = {numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
                      numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64}

    def _type(self, *bufs):
        for buf in bufs:
            if buf.dtype not in self.types or not buf.flags.c_contiguous:
                raise TypeError(f"NCCL: expected contiguous float32/float64 buffers, got "
                                f"{buf.dtype} (contiguous: {buf.flags.c_contiguous})")
        if len({buf.dtype for buf in bufs}) > 1:
            raise TypeError(f"NCCL: the buffers' dtypes differ: {[str(b.dtype) for b in bufs]}")
        return self.types[bufs[0].dtype]

    def _stream(self) -> int:
        return self.cupy.cuda.get_current_stream().ptr

    def allreduce_sum(self, buf) -> None:
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf),
                            self.nccl.NCCL_SUM, self._stream())

    def broadcast(self, buf, root: int = 0) -> None:
        self.comm.bcast(buf.data.ptr, buf.size, self._type(buf), root, self._stream())

    def reduce_scatter_sum(self, send, recv) -> None:
        self._check_parts("reduce_scatter_sum", send, recv.size)
        self.comm.reduceScatter(send.data.ptr, recv.data.ptr, recv.size, self._type(send, recv),
                                self.nccl.NCCL_SUM, self._stream())

    def allgather(self, buf) -> None:
        count = buf.size // self.size
        self._check_parts("allgather", buf, count)
        # in place, as NCCL defines it: this rank's part sits at its own offset of the whole
        mine = buf.data.ptr + self.rank * count * buf.itemsize
        self.comm.allGather(mine, buf.data.ptr, count, self._type(buf), self._stream())

    def barrier(self) -> None:
        one = self.cupy.zeros(1, dtype=numpy.float32)
        self.allreduce_sum(one)
        self.cupy.cuda.get_current_stream().synchronize()


def check_own_devices(devices, rank: int) -> None:
    """Raise unless ``devices`` (every rank's (host, GPU PCI bus id)) has no repeats.

    NCCL refuses two ranks on one GPU ("Duplicate GPU detected") with a message
    that does not say which; this one does.
    """
    mine = devices[rank]
    twins = [r for r, d in enumerate(devices) if d == mine]
    if len(twins) > 1:
        raise RuntimeError(f"NCCL: ranks {twins} all use GPU {mine[1]} on {mine[0]}; each rank "
                           "needs its own GPU: call nanoae.parallel.communicator.world() (or comm.use_gpu()) "
                           "before creating any array, and start at most one rank per GPU")
