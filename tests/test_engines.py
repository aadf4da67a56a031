"""Every engine (``nanoae.parallel.engines``) through the same interface tests (tests/helpers/engine_checks.py).

MpiEngine runs them under ``mpiexec`` on 2 and 3 ranks; NcclEngine runs them
on threads over a fake ``cupy.cuda.nccl`` that reads and writes the memory at
the pointers it is given (tests/helpers/fake_nccl.py; no GPU here).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers.engine_checks import check_engine
from helpers.fake_nccl import run_ranks
from helpers.mpi_jobs import needs_mpi, ok, run_worker

from nanoae.parallel.engines import (
    ENGINES,
    NCCL_MISSING,
    Engine,
    MpiEngine,
    NcclEngine,
    engine_for,
)


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_engine_passes_the_interface_tests(tmp_path, ranks):
    ok(run_worker(tmp_path, "engines", ranks=ranks))
    assert (tmp_path / "engines.ok").read_text() == f"MpiEngine {ranks}"


@pytest.mark.parametrize("ranks", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nccl_engine_passes_the_interface_tests(monkeypatch, ranks, dtype):
    def rank_body(rank, mpi_comm):
        import cupy  # noqa: PLC0415  (the fake)

        engine = NcclEngine(mpi_comm)
        check_engine(engine, lambda a: cupy.asarray(a), dtype=dtype)
        return engine.comm.calls

    calls = run_ranks(monkeypatch, ranks, rank_body)
    broadcasts = ["bcast"] * len({0, ranks - 1})
    expected = ["allReduce", *broadcasts, "reduceScatter", "allGather", "allReduce", "bcast"]  # barrier, then
    # the broadcast from the default root
    assert calls == [expected] * ranks


class _WrongOffsetNccl(NcclEngine):
    """A broken form: every rank sends the part at offset 0 in the all-gather."""

    def allgather(self, buf):
        count = buf.size // self.size
        self.comm.allGather(buf.data.ptr, buf.data.ptr, count, self._type(buf), self._stream())


def test_the_interface_tests_catch_a_wrong_offset(monkeypatch):
    def rank_body(rank, mpi_comm):
        import cupy  # noqa: PLC0415

        check_engine(_WrongOffsetNccl(mpi_comm), lambda a: cupy.asarray(a))

    with pytest.raises(AssertionError, match="allgather"):
        run_ranks(monkeypatch, 2, rank_body)


def test_nccl_engine_names_two_ranks_on_one_gpu(monkeypatch):
    with pytest.raises(RuntimeError) as caught:
        run_ranks(monkeypatch, 2, lambda rank, comm: NcclEngine(comm),
                  bus_ids=["0000:01:00.0", "0000:01:00.0"])
    assert str(caught.value).startswith("NCCL: ranks [0, 1] all use GPU 0000:01:00.0 on ")
    assert str(caught.value).endswith(
        "; each rank needs its own GPU: call nanoae.parallel.communicator.world() (or comm.use_gpu()) before "
        "creating any array, and start at most one rank per GPU")


def test_nccl_engine_refuses_other_dtypes(monkeypatch):
    def rank_body(rank, mpi_comm):
        import cupy  # noqa: PLC0415

        NcclEngine(mpi_comm).allreduce_sum(cupy.asarray(np.zeros(3, np.int32)))

    with pytest.raises(TypeError, match="NCCL: expected contiguous float32/float64 buffers, got int32"):
        run_ranks(monkeypatch, 1, rank_body)


def test_engines_are_chosen_by_array_module_and_share_one_interface():
    assert engine_for("numpy") is MpiEngine and engine_for("cupy") is NcclEngine
    with pytest.raises(ValueError, match=r"no engine moves torch arrays; the engines are \['cupy', 'numpy'\]"):
        engine_for("torch")
    for cls in ENGINES.values():
        assert issubclass(cls, Engine)
        for method in ("allreduce_sum", "broadcast", "reduce_scatter_sum", "allgather", "barrier"):
            assert getattr(cls, method) is not getattr(Engine, method), (cls, method)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mpi_engine_passes_the_interface_tests_on_thread_ranks(monkeypatch, ranks):
    # in this process (tests/helpers/thread_ranks.py), so that coverage and mutation tools see it
    from helpers.thread_ranks import run_ranks as run_thread_ranks  # noqa: PLC0415

    def work(comm):
        engine = comm.engine(np.zeros(1))
        assert isinstance(engine, MpiEngine) and repr(engine) == f"MpiEngine(rank={comm.rank}, size={ranks})"
        for dtype in (np.float32, np.float64):
            check_engine(engine, np.asarray, dtype=dtype)

    run_thread_ranks(ranks, work, monkeypatch)


def test_nccl_engine_says_how_to_install_nccl_when_cupy_cannot_load_it(monkeypatch):
    import sys  # noqa: PLC0415

    def unavailable(rank, mpi_comm):  # CuPy's module is there, but the library did not load
        sys.modules["cupy.cuda.nccl"].available = False
        NcclEngine(mpi_comm)

    def missing(rank, mpi_comm):  # CuPy built without its NCCL module
        monkeypatch.delattr(sys.modules["cupy.cuda"], "nccl")
        monkeypatch.delitem(sys.modules, "cupy.cuda.nccl")  # importing it raises ImportError
        NcclEngine(mpi_comm)

    for body in (unavailable, missing):
        with pytest.raises(RuntimeError) as caught:
            run_ranks(monkeypatch, 1, body)
        assert str(caught.value) == NCCL_MISSING


def test_nccl_draws_one_id_on_rank_0_and_every_rank_joins_it(monkeypatch):
    import sys  # noqa: PLC0415

    drawn = []

    def body(rank, mpi_comm):
        nccl = sys.modules["cupy.cuda.nccl"]
        if rank == 0:
            draw = nccl.get_unique_id
            nccl.get_unique_id = lambda: drawn.append(draw()) or drawn[-1]
        mpi_comm.allgather(None)  # rank 0 has wrapped it before any rank draws
        return NcclEngine(mpi_comm)

    engines = run_ranks(monkeypatch, 3, body)
    assert len(drawn) == 1  # NCCL's unique id is drawn once, by rank 0
    assert {id(e.comm.group) for e in engines} == {id(engines[0].comm.group)}  # one communicator
    assert [repr(e) for e in engines] == [f"NcclEngine(rank={r}, size=3)" for r in range(3)]


def test_nccl_engine_refuses_buffers_of_two_dtypes(monkeypatch):
    def rank_body(rank, mpi_comm):
        import cupy  # noqa: PLC0415

        NcclEngine(mpi_comm).reduce_scatter_sum(cupy.asarray(np.zeros(2, np.float32)),
                                                cupy.asarray(np.zeros(2, np.float64)))

    with pytest.raises(TypeError, match=re.escape("NCCL: the buffers' dtypes differ: ['float32', 'float64']")):
        run_ranks(monkeypatch, 1, rank_body)
