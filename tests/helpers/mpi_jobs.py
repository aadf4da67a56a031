"""Launching nanoae under ``mpiexec`` from the tests: the launcher, the skip, the environment.

Shared by tests/test_communicator.py and tests/test_engines.py; the ranks run
tests/helpers/mpi_worker.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nanoae.parallel import communicator

TESTS = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "mpi_worker.py"


def mpiexec():
    """The mpiexec beside this Python (the mpich wheel), else the one on PATH, else None."""
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel puts it in the venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _skip_reason():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if mpiexec() is None:
        return "no mpiexec in the virtual environment or on PATH (pip install -e '.[mpi]')"
    return None


def needs_mpi(test):
    """Runs ``mpiexec``: skipped where MPI is missing, and marked ``subprocess``."""
    skip = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
    return pytest.mark.subprocess(skip(test))


def job_env():
    """The environment of a job: one BLAS thread per rank, the tests importable, no outer launcher."""
    # One BLAS thread per rank (2 ranks on 2 cores), and no launcher variables inherited
    # from an outer mpiexec: the plain runs below must be true single processes.
    env = {k: v for k, v in os.environ.items()
           if k not in communicator._SIZE_VARIABLES and k != "NANOAE_MPI"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")]))
    return env


def run_worker(tmp_path, *args, ranks=2, timeout=60):
    """Run mpi_worker.py on ``ranks`` MPI ranks (or, with ranks=None, as one plain process)."""
    command = [sys.executable, str(WORKER), *args, "--out", str(tmp_path)]
    if ranks is not None:
        command = [mpiexec(), "-n", str(ranks), *command]
    return subprocess.run(command, env=job_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout)


def ok(proc):
    """Fail with the output of a job that did not exit 0."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
