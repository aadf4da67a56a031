"""The interface tests every engine passes (``nanoae.parallel.engines``), one function per rank.

``check_engine(engine, asarray)`` runs on every rank of a job at once: under
``mpiexec`` for ``MpiEngine`` (tests/helpers/mpi_worker.py ``engines``), and in threads
over a fake NCCL for ``NcclEngine`` (tests/helpers/fake_nccl.py). ``asarray`` makes an
array of the engine's module from a NumPy one; ``to_host`` reads one back.
It raises AssertionError naming the collective that went wrong.
"""

from __future__ import annotations

import numpy


def check_engine(engine, asarray, to_host=numpy.asarray, dtype=numpy.float32) -> None:
    rank, size = engine.rank, engine.size

    buf = asarray(numpy.arange(5, dtype=dtype) + rank)
    engine.allreduce_sum(buf)
    expected = size * numpy.arange(5, dtype=dtype) + sum(range(size))
    numpy.testing.assert_array_equal(to_host(buf), expected, err_msg="allreduce_sum")

    for root in sorted({0, size - 1}):
        buf = asarray(numpy.full(4, 100 * rank + 7, dtype=dtype))
        engine.broadcast(buf, root=root)
        numpy.testing.assert_array_equal(to_host(buf), numpy.full(4, 100 * root + 7, dtype=dtype),
                                         err_msg=f"broadcast from root {root}")

    count = 3  # rank r receives the sum over ranks q of (q + 1) * part r of arange
    send = asarray(numpy.arange(size * count, dtype=dtype) * (rank + 1))
    recv = asarray(numpy.zeros(count, dtype=dtype))
    engine.reduce_scatter_sum(send, recv)
    part = numpy.arange(rank * count, (rank + 1) * count, dtype=dtype)
    numpy.testing.assert_array_equal(to_host(recv), part * sum(q + 1 for q in range(size)),
                                     err_msg="reduce_scatter_sum")
    numpy.testing.assert_array_equal(to_host(send), numpy.arange(size * count, dtype=dtype) * (rank + 1),
                                     err_msg="reduce_scatter_sum changed its send buffer")

    whole = numpy.full(size * 2, -1, dtype=dtype)
    whole[2 * rank:2 * rank + 2] = [10 * rank, 10 * rank + 1]  # only this rank's part is set
    buf = asarray(whole)
    engine.allgather(buf)
    expected = numpy.array([[10 * r, 10 * r + 1] for r in range(size)], dtype=dtype).ravel()
    numpy.testing.assert_array_equal(to_host(buf), expected, err_msg="allgather")

    engine.barrier()

    buf = asarray(numpy.full(3, 100 * rank + 7, dtype=dtype))
    engine.broadcast(buf)  # the default root is rank 0
    numpy.testing.assert_array_equal(to_host(buf), numpy.full(3, 7, dtype=dtype), err_msg="broadcast")

    # a whole buffer that is not size x part is refused, on every rank alike, naming the collective
    try:
        engine.reduce_scatter_sum(asarray(numpy.zeros(size * count + 1, dtype=dtype)),
                                  asarray(numpy.zeros(count, dtype=dtype)))
    except ValueError as exc:
        assert str(exc) == (f"{engine.name} reduce_scatter_sum: the whole buffer must hold {size} ranks "
                            f"x {count} elements = {size * count}, got {size * count + 1}"), str(exc)
    else:
        raise AssertionError("reduce_scatter_sum accepted a send buffer of the wrong size")
    if size > 1:  # (one rank's part is any buffer)
        try:
            engine.allgather(asarray(numpy.zeros(size * 2 + 1, dtype=dtype)))
        except ValueError as exc:
            assert str(exc) == (f"{engine.name} allgather: the whole buffer must hold {size} ranks "
                                f"x 2 elements = {size * 2}, got {size * 2 + 1}"), str(exc)
        else:
            raise AssertionError("allgather accepted a buffer that does not divide by the ranks")
