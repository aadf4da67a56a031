"""BLAS and OpenMP threads per rank: the machine's cores shared out between its ranks.

A NumPy process starts OpenBLAS (or MKL) with one thread per core. Two MPI ranks
on a 2-core machine then run four BLAS threads that spin for two cores, and an
epoch takes 4-7x longer than one process alone. So when a process is one of
``local_ranks`` ranks on its machine, ``share_cores`` sets its BLAS and OpenMP
thread pools to

    threads = max(1, cores // local_ranks)

where ``cores`` is the CPUs this process may run on (its affinity). A launcher
that pinned each rank to its own cores (Open MPI's ``--bind-to``, Slurm's
``--cpus-per-task``) has already shared them: the rank then keeps one thread per
core it was given.

A thread count the user set (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ...) wins; rank 0 warns once if it oversubscribes the cores.

The pools are resized at run time with threadpoolctl (NumPy is imported long
before the job's size is known, so setting the environment would be too late).
"""

from __future__ import annotations

import os
import warnings

__all__ = ["share_cores", "thread_counts", "user_thread_setting", "OversubscriptionWarning"]

# The variables through which users fix thread counts, in the order they are reported.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


class OversubscriptionWarning(UserWarning):
    """The user's thread count times the ranks on this machine exceeds its cores."""


def user_thread_setting(environ=None) -> tuple[str, int] | None:
    """(variable, count) of the first thread count the user set, or None."""
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            try:
                return name, int(value.split(",")[0])  # OMP_NUM_THREADS may list nested levels
            except ValueError:
                continue
    return None


def machine_cores() -> int:
    """All CPUs of this machine (what an unpinned process may use)."""
    return os.cpu_count() or 1


def my_cores() -> int:
    """The CPUs this process may run on: its affinity, where the system tells it."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return machine_cores()


def threads_per_rank(local_ranks: int, cores: int, machine: int) -> int:
    """Threads for one of ``local_ranks`` ranks that may run on ``cores`` of ``machine`` CPUs."""
    if cores < machine:  # the launcher pinned this rank to its own cores: use them all
        return max(1, cores)
    return max(1, cores // max(1, local_ranks))


def share_cores(local_ranks: int, *, is_root: bool, environ=None,
                cores: int | None = None, machine: int | None = None) -> int | None:
    """Set this rank's BLAS and OpenMP threads to its share of the machine; returns the count.

    Returns None, and changes nothing, when the user set a count; rank 0 then
    warns (once) if ``count * local_ranks`` exceeds the machine's cores.
    """
    machine = machine_cores() if machine is None else machine
    cores = my_cores() if cores is None else cores
    user = user_thread_setting(environ)
    if user is not None:
        name, count = user
        if is_root and count * local_ranks > machine:
            warnings.warn(f"{name}={count} with {local_ranks} ranks on this machine runs "
                          f"{count * local_ranks} threads on {machine} cores, and they will wait "
                          f"for each other; unset it (nanoae then gives each rank "
                          f"{threads_per_rank(local_ranks, machine, machine)}) or lower it",
                          OversubscriptionWarning, stacklevel=2)
        return None
    count = threads_per_rank(local_ranks, cores, machine)
    from threadpoolctl import threadpool_limits  # noqa: PLC0415  (only for several ranks)

    threadpool_limits(limits=count, user_api="blas")  # stays in force: not used as a context
    threadpool_limits(limits=count, user_api="openmp")
    return count


def thread_counts() -> dict:
    """The thread count of each loaded pool, e.g. {"blas": 1, "openmp": 1} (to check)."""
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    counts = {}
    for pool in threadpool_info():
        counts[pool["user_api"]] = max(counts.get(pool["user_api"], 0), pool["num_threads"])
    return counts
