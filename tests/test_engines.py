"""Every engine (``nanoae.engines``) through the same interface tests (tests/engine_checks.py).

MpiEngine runs them under ``mpiexec`` on 2 and 3 ranks; NcclEngine runs them
on threads over a fake ``cupy.cuda.nccl`` that reads and writes the memory at
the pointers it is given (tests/fake_nccl.py; no GPU here).
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_checks import check_engine
from fake_nccl import run_ranks
from test_distributed import _ok, needs_mpi, run_worker

from nanoae.engines import ENGINES, Engine, MpiEngine, NcclEngine, engine_for


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_mpi_engine_passes_the_interface_tests(tmp_path, ranks):
    _ok(run_worker(tmp_path, "engines", ranks=ranks))
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
    expected = ["allReduce", *broadcasts, "reduceScatter", "allGather", "allReduce"]  # last: barrier
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
    with pytest.raises(RuntimeError, match=r"NCCL: ranks \[0, 1\] all use GPU 0000:01:00.0"):
        run_ranks(monkeypatch, 2, lambda rank, comm: NcclEngine(comm),
                  bus_ids=["0000:01:00.0", "0000:01:00.0"])


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
