"""Ranks of an MPI job as threads of this process, for tests of the data-parallel code.

``run_ranks(size, work)`` calls ``work(comm)`` on ``size`` threads, each with a
``communicator.Communicator`` over a stand-in for an mpi4py communicator: the
few calls nanoae makes (Allreduce, Bcast, Reduce_scatter_block, Allgather,
Barrier, allgather, Split_type, Abort) done through shared memory and a
barrier. The collectives add in rank order, as MPI does for two ranks, so
results match a real job's.

Why threads, when ``test_communicator.py`` also runs real ``mpiexec`` jobs: a
test in this process is seen by coverage and mutation tools (docs/mutation.md),
runs in a fraction of a second, and needs no MPI installation.
"""

from __future__ import annotations

import sys
import threading
import types

from nanoae.parallel import communicator


class _Hub:
    """What the ranks share: one slot each, and a barrier (a rank that fails breaks it)."""

    def __init__(self, size: int):
        self.size, self.slots = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=60)

    def exchange(self, rank, value):
        """Every rank's value, in rank order, once all have given theirs."""
        self.slots[rank] = value
        self.barrier.wait()
        everyone = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before all have read them
        return everyone


# The constants of the fake ``mpi4py.MPI``: ThreadComm checks it is given them (a collective
# called without ``op=MPI.SUM`` or ``MPI.IN_PLACE`` would do something else under a real MPI).
MPI = types.SimpleNamespace(IN_PLACE="MPI.IN_PLACE", SUM="MPI.SUM", COMM_TYPE_SHARED="MPI.COMM_TYPE_SHARED")


class ThreadComm:
    """The mpi4py calls nanoae makes, for one rank of a ``_Hub``."""

    def __init__(self, hub: _Hub, rank: int):
        self.hub, self.rank = hub, rank

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.hub.size

    def Allreduce(self, sendbuf, recvbuf, op=None):  # only in place: recvbuf holds the input
        assert sendbuf is MPI.IN_PLACE and op is MPI.SUM, (sendbuf, op)
        parts = self.hub.exchange(self.rank, recvbuf.copy())
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        recvbuf[...] = total

    def Bcast(self, buf, root=0):
        buf[...] = self.hub.exchange(self.rank, buf.copy())[root]

    def Reduce_scatter_block(self, send, recv, op=None):
        assert op is MPI.SUM, op
        parts = self.hub.exchange(self.rank, send.copy())
        c = recv.size
        total = parts[0][self.rank * c:(self.rank + 1) * c].copy()
        for part in parts[1:]:
            total += part[self.rank * c:(self.rank + 1) * c]
        recv[...] = total

    def Allgather(self, sendbuf, buf):  # only in place: rank r's part is already in buf
        assert sendbuf is MPI.IN_PLACE, sendbuf
        c = buf.size // self.hub.size
        parts = self.hub.exchange(self.rank, buf[self.rank * c:(self.rank + 1) * c].copy())
        for r, part in enumerate(parts):
            buf[r * c:(r + 1) * c] = part

    def Barrier(self):
        self.hub.exchange(self.rank, None)

    def Split_type(self, kind):  # every rank on one machine
        assert kind is MPI.COMM_TYPE_SHARED, kind
        return self

    def Free(self):
        pass

    def allgather(self, value):
        return self.hub.exchange(self.rank, value)

    def Abort(self, code):  # noqa: N802  (mpi4py's name) recorded; the test decides what follows
        self.aborted = code


def fake_mpi4py(monkeypatch):
    """An ``mpi4py`` whose MPI module has the few constants nanoae passes to ThreadComm."""
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=MPI))
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", MPI)


def run_ranks(size, work, monkeypatch):
    """[work(comm) for each rank], run at once on ``size`` threads; re-raises a rank's error."""
    fake_mpi4py(monkeypatch)
    hub = _Hub(size)
    results, errors = [None] * size, [None] * size

    def rank_main(rank):
        try:
            results[rank] = work(communicator.Communicator(ThreadComm(hub, rank)))
        except BaseException as exc:  # noqa: BLE001  (handed to the test below)
            errors[rank] = exc
            hub.barrier.abort()  # the other ranks stop waiting for this one

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)),
                 next((e for e in errors if e is not None), None))
    if first is not None:
        raise first
    return results


__all__ = ["run_ranks", "ThreadComm", "MPI"]
