"""A fake ``cupy`` and ``cupy.cuda.nccl`` on the CPU, for NcclEngine's tests (no GPU here).

Ranks are threads of one process. A "device array" is a NumPy array whose
``.data.ptr`` is its memory address, as a CuPy array's is a device address;
the fake ``NcclCommunicator`` reads and writes the memory at the pointers and
counts it is given, as NCCL does, so a wrong pointer, offset or count in the
engine gives wrong numbers here too. Each collective is a rendezvous of all the
ranks (a ``threading.Barrier``): every rank posts its arguments, each reads
what it needs, and only then does any rank write its result.

``run_ranks(size, fn)`` installs the fakes in ``sys.modules`` (through
pytest's ``monkeypatch``) and runs ``fn(rank, mpi_comm)`` on ``size`` threads,
with a fake mpi4py communicator for the bootstrap (``allgather``, ``bcast``).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import types

import numpy

FLOAT32, FLOAT64, SUM = 7, 8, 0  # NCCL's own enum values
_DTYPES = {FLOAT32: numpy.float32, FLOAT64: numpy.float64}
_UIDS = itertools.count()


class DeviceArray(numpy.ndarray):
    """A NumPy array that answers ``.data.ptr`` with its address, as a CuPy array does."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _memory(ptr, count, nccl_type):
    dtype = numpy.dtype(_DTYPES[nccl_type])
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return numpy.frombuffer(raw, dtype=dtype)


class _Rendezvous:
    """Every rank posts a value and gets everyone's, twice synchronised (read, then write)."""

    def __init__(self, size):
        self.size, self.posted, self.barrier = size, [None] * size, threading.Barrier(size, timeout=10)

    def exchange(self, rank, value):
        self.posted[rank] = value
        self.barrier.wait()
        everyone = list(self.posted)
        self.barrier.wait()
        return everyone


class FakeMpiComm:
    """What NcclEngine's bootstrap asks of mpi4py: rank, size, allgather and bcast of objects."""

    def __init__(self, rank, rendezvous):
        self.rank, self.rendezvous = rank, rendezvous

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.rendezvous.size

    def allgather(self, value):
        return self.rendezvous.exchange(self.rank, value)

    def bcast(self, value, root=0):
        return self.rendezvous.exchange(self.rank, value)[root]


class FakeNcclCommunicator:
    """``cupy.cuda.nccl.NcclCommunicator`` over threads; ranks with the same uid form a group."""

    groups: dict = {}
    lock = threading.Lock()

    def __init__(self, ndev, uid, rank):
        with self.lock:
            self.group = self.groups.setdefault(uid, _Rendezvous(ndev))
        assert self.group.size == ndev
        self.rank, self.size = rank, ndev
        self.calls = []

    def _collect(self, name, ptr, count, nccl_type, stream, **extra):
        assert isinstance(stream, int), "stream must be a pointer (an int)"
        self.calls.append(name)
        posts = self.group.exchange(self.rank, (name, ptr, count, nccl_type, extra))
        assert len({p[0] for p in posts}) == 1, f"ranks called different collectives: {posts}"
        inputs = [_memory(p[1], p[2], p[3]).copy() for p in posts]  # read everyone's send buffer
        self.group.barrier.wait()  # nobody writes before everyone has read
        return inputs

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        assert op == SUM
        total = sum(self._collect("allReduce", sendbuf, count, datatype, stream))
        _memory(recvbuf, count, datatype)[...] = total

    def bcast(self, buff, count, datatype, root, stream):
        inputs = self._collect("bcast", buff, count, datatype, stream)
        _memory(buff, count, datatype)[...] = inputs[root]

    def reduceScatter(self, sendbuf, recvbuf, recvcount, datatype, op, stream):
        assert op == SUM
        inputs = self._collect("reduceScatter", sendbuf, self.size * recvcount, datatype, stream)
        part = slice(self.rank * recvcount, (self.rank + 1) * recvcount)
        _memory(recvbuf, recvcount, datatype)[...] = sum(x[part] for x in inputs)

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        inputs = self._collect("allGather", sendbuf, count, datatype, stream)
        _memory(recvbuf, self.size * count, datatype)[...] = numpy.concatenate(inputs)


def fake_modules():
    """(cupy, cupy.cuda, cupy.cuda.nccl) fakes; the current device is per thread (per rank)."""
    local = threading.local()
    nccl = types.ModuleType("cupy.cuda.nccl")
    nccl.NCCL_FLOAT32, nccl.NCCL_FLOAT64, nccl.NCCL_SUM = FLOAT32, FLOAT64, SUM
    nccl.NcclCommunicator = FakeNcclCommunicator
    nccl.get_unique_id = lambda: ("uid", next(_UIDS))  # new on every call, as NCCL's are
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = nccl
    cuda.get_current_stream = lambda: stream
    cuda.Device = lambda: types.SimpleNamespace(pci_bus_id=local.bus_id)
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    cupy.asarray = lambda a, dtype=None: numpy.array(a, dtype=dtype).view(DeviceArray)
    cupy.zeros = lambda n, dtype=numpy.float32: numpy.zeros(n, dtype=dtype).view(DeviceArray)
    cupy.local = local
    return cupy, cuda, nccl


def run_ranks(monkeypatch, size, fn, *, bus_ids=None):
    """Run ``fn(rank, mpi_comm)`` on ``size`` threads with the fakes installed; return the
    results in rank order, re-raising the first rank's exception."""
    cupy, cuda, nccl = fake_modules()
    for name, module in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.nccl", nccl)):
        monkeypatch.setitem(__import__("sys").modules, name, module)
    rendezvous = _Rendezvous(size)
    results, errors = [None] * size, [None] * size
    bus_ids = bus_ids or [f"0000:{r:02x}:00.0" for r in range(size)]

    def body(rank):
        cupy.local.bus_id = bus_ids[rank]
        try:
            results[rank] = fn(rank, FakeMpiComm(rank, rendezvous))
        except BaseException as exc:  # noqa: BLE001  (handed to the test's thread)
            errors[rank] = exc
            rendezvous.barrier.abort()  # the others stop waiting for this rank

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)),
                 next((e for e in errors if e is not None), None))
    if first is not None:
        raise first
    return results


# --- a third engine, for tests: ranks as threads over NumPy arrays ------------------------

from nanoae.parallel.communicator import Communicator  # noqa: E402
from nanoae.parallel.engines import Engine  # noqa: E402


class ThreadEngine(Engine):
    """The engine interface over NumPy arrays shared by threads (one rendezvous per collective).

    Tests run the sharded optimizer on N "ranks" in one process with it; that it
    is a new class and nothing else is what ``nanoae.parallel.engines`` promises of a third engine.
    """

    name = "threads"

    def __init__(self, rank, rendezvous):
        self.rank, self.size, self.rendezvous = rank, rendezvous.size, rendezvous

    def _everyone(self, buf):
        posts = self.rendezvous.exchange(self.rank, buf.copy())
        return posts

    def allreduce_sum(self, buf):
        buf[...] = sum(self._everyone(buf))

    def broadcast(self, buf, root=0):
        buf[...] = self._everyone(buf)[root]

    def reduce_scatter_sum(self, send, recv):
        self._check_parts("reduce_scatter_sum", send, recv.size)
        assert send.dtype == recv.dtype, "NCCL and MPI need one dtype for both buffers"
        c = recv.size
        recv[...] = sum(x[self.rank * c:(self.rank + 1) * c] for x in self._everyone(send))

    def allgather(self, buf):
        c = buf.size // self.size
        self._check_parts("allgather", buf, c)
        buf[...] = numpy.concatenate([x[r * c:(r + 1) * c] for r, x in enumerate(self._everyone(buf))])

    def barrier(self):
        self.rendezvous.exchange(self.rank, None)


class ThreadComm:
    """What the sharded optimizer asks of a Communicator: rank, size, share and the engine."""

    def __init__(self, engine):
        self.rank, self.size, self._engine = engine.rank, engine.size, engine
        self.share = 1.0 / self.size

    shard = Communicator.shard  # the real one, which also sets share

    def engine(self, array):
        return self._engine


def run_threads(size, fn):
    """Run ``fn(rank, comm)`` (comm: a ThreadComm) on ``size`` threads; results in rank order."""
    rendezvous = _Rendezvous(size)
    results, errors = [None] * size, [None] * size

    def body(rank):
        try:
            results[rank] = fn(rank, ThreadComm(ThreadEngine(rank, rendezvous)))
        except BaseException as exc:  # noqa: BLE001
            errors[rank] = exc
            rendezvous.barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for e in errors:
        if e is not None and not isinstance(e, threading.BrokenBarrierError):
            raise e
    for e in errors:
        if e is not None:
            raise e
    return results
