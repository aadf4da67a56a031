"""Threads per rank: the user's setting found, the machine shared, the warning's figures (in-process)."""

import os
import warnings

import pytest
import threadpoolctl

from nanoae.parallel import threads


@pytest.fixture
def limits(monkeypatch):
    """threadpool_limits recorded, not applied: [(limits, user_api), ...]."""
    calls = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits",
                        lambda limits, user_api: calls.append((limits, user_api)))
    return calls


def test_the_first_variable_set_in_the_reporting_order_wins():
    assert threads.user_thread_setting({}) is None
    assert threads.user_thread_setting({"MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "5"}) == (
        "OPENBLAS_NUM_THREADS", 5)
    assert threads.user_thread_setting({"VECLIB_MAXIMUM_THREADS": "7"}) == ("VECLIB_MAXIMUM_THREADS", 7)
    assert threads.user_thread_setting({"BLIS_NUM_THREADS": " 4 "}) == ("BLIS_NUM_THREADS", 4)
    # nested OpenMP levels: the outer one counts
    assert threads.user_thread_setting({"OMP_NUM_THREADS": "6,2"}) == ("OMP_NUM_THREADS", 6)
    # a value that is not a number is skipped, and the next variable read
    assert threads.user_thread_setting({"OMP_NUM_THREADS": "many", "MKL_NUM_THREADS": "2"}) == (
        "MKL_NUM_THREADS", 2)
    assert threads.user_thread_setting({"OMP_NUM_THREADS": "   "}) is None


def test_without_an_environment_the_processes_own_is_read(monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "9")
    assert threads.user_thread_setting() == ("MKL_NUM_THREADS", 9)


def test_the_machines_cores_and_this_processes_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert threads.machine_cores() == 12
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one
    assert threads.machine_cores() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5} if pid == 0 else set(),
                        raising=False)
    assert threads.my_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert threads.my_cores() == 7  # no affinity on this system: the machine's


@pytest.mark.parametrize("local_ranks, cores, machine, expected", [
    (1, 8, 8, 8), (2, 8, 8, 4), (3, 8, 8, 2), (8, 8, 8, 1), (9, 8, 8, 1), (0, 8, 8, 8),
    (2, 3, 8, 3),  # pinned to 3 of 8 cores: all three
    (2, 0, 8, 1),  # pinned to none (cannot happen): still one
    (4, 8, 4, 2),  # more cores seen than the machine's (cannot happen): shared
])
def test_threads_per_rank(local_ranks, cores, machine, expected):
    assert threads.threads_per_rank(local_ranks, cores, machine) == expected


def test_share_cores_sets_both_pools_to_the_ranks_share(limits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threads.share_cores(2, is_root=True, environ={}, cores=8, machine=8) == 4
    assert limits == [(4, "blas"), (4, "openmp")]


def test_share_cores_reads_the_machine_when_not_told(limits, monkeypatch):
    monkeypatch.setattr(threads, "machine_cores", lambda: 6)
    monkeypatch.setattr(threads, "my_cores", lambda: 6)
    assert threads.share_cores(3, is_root=False, environ={}) == 2
    monkeypatch.setattr(threads, "my_cores", lambda: 4)  # pinned to 4 of the 6
    assert threads.share_cores(3, is_root=False, environ={}) == 4
    assert limits == [(2, "blas"), (2, "openmp"), (4, "blas"), (4, "openmp")]


def test_a_users_count_is_kept_and_rank_0_warns_with_the_figures(limits):
    with pytest.warns(threads.OversubscriptionWarning) as caught:
        assert threads.share_cores(3, is_root=True, environ={"OPENBLAS_NUM_THREADS": "2"},
                                   cores=4, machine=4) is None
    assert [str(w.message) for w in caught] == [
        "OPENBLAS_NUM_THREADS=2 with 3 ranks on this machine runs 6 threads on 4 cores, and they "
        "will wait for each other; unset it (nanoae then gives each rank 1) or lower it"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the other ranks stay quiet; a count that fits (2 * 2 = 4 cores) is no warning
        assert threads.share_cores(3, is_root=False, environ={"OMP_NUM_THREADS": "2"},
                                   cores=4, machine=4) is None
        assert threads.share_cores(2, is_root=True, environ={"OMP_NUM_THREADS": "2"},
                                   cores=4, machine=4) is None
    with pytest.warns(threads.OversubscriptionWarning, match=r"5 threads on 4 cores.*each rank 4\)"):
        threads.share_cores(1, is_root=True, environ={"OMP_NUM_THREADS": "5"}, cores=2, machine=4)
    assert limits == []  # nothing changed


def test_thread_counts_are_the_largest_pool_of_each_kind(monkeypatch):
    pools = [{"user_api": "blas", "num_threads": 2}, {"user_api": "openmp", "num_threads": 3},
             {"user_api": "blas", "num_threads": 5}, {"user_api": "blas", "num_threads": 1}]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: pools)
    assert threads.thread_counts() == {"blas": 5, "openmp": 3}
    pools[:] = [{"user_api": "openmp", "num_threads": 0}]  # (none real): the count is the pool's
    assert threads.thread_counts() == {"openmp": 0}
