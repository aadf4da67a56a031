"""Data-parallel training over MPI (mpi4py) and, for CuPy arrays, NCCL.

Every rank holds the whole model and a disjoint slice (a *shard*) of each
global mini-batch. One training step is the usual one plus one line:

    comm.broadcast_parameters(params)          # once: every rank starts from rank 0's weights
    for each global batch B:
        mine = B[comm.shard(len(B))]                     # this rank's shard b_r (comm.share = b_r / B)
        forward + backward on mine                       # fills p.grad = dL_r/dp
        comm.average_gradients(params)                   # the one collective of the step
        optimizer.step()                                 # identical on every rank

(``nanoae.parallel.zero.ShardedOptimizer`` folds the last two lines into its
``step()``, and each rank then updates only its 1/N of the weights.)

Why the weight. The loss of a shard is its mean, L_r = (1/b_r) sum_{i in r} l_i,
and the loss of the global batch is L = (1/B) sum_i l_i = sum_r (b_r/B) L_r, so

    dL/dp = sum_r (b_r / B) dL_r/dp.

``average_gradients`` computes that sum on every rank with ONE all-reduce over
one float32 buffer that holds every ``p.grad`` back to back (one call per step,
not one per array: each call costs a latency alpha, however small the array).
With equal shards the weight is 1/size, the plain mean. The buffer carries the
weight itself in one more element, so the sum of the weights (which must be 1)
is checked without a second collective.

The arrays move through an *engine* chosen by their array module, one class
per engine behind one interface (``engines/``, as ChainerMN's communicators):
``MpiEngine`` for NumPy arrays (mpi4py), ``NcclEngine`` for CuPy arrays (NCCL,
bootstrapped through MPI; the buffer never leaves the GPU). ``Communicator``
itself never asks which engine it has.

Without MPI nothing changes: ``world()`` returns a communicator of size 1 whose
methods do nothing, and mpi4py is not even imported unless the process was
started by an MPI launcher (``mpiexec``/``mpirun``/``srun``, detected from the
environment they set) or ``NANOAE_MPI=1``.

Faults. A rank that dies while the others wait in a collective leaves them
waiting forever (the classic MPI hang). ``abort_on_error`` and
``install_excepthook`` turn an exception or Ctrl-C on any rank into one line
``rank R of N: <error>`` and ``MPI_Abort``, which ends every rank of the job
within seconds; checkpoints are written atomically (checkpoint.py), so the last
one stays intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import traceback

import numpy

from nanoae.backend import get_array_module, to_numpy
from nanoae.parallel.engines import NCCL_MISSING, check_own_devices, engine_for

__all__ = ["Communicator", "world", "launched_size", "abort_on_error", "fingerprint", "gpu_for_rank",
           "NCCL_MISSING", "check_own_devices"]

# How long a failing rank waits, after printing why, before it ends the job (see Communicator.abort).
ABORT_GRACE_SECONDS = 1.0

# Environment variables through which MPI launchers tell a process the job's size:
# MPICH/Intel MPI (hydra), Open MPI, MVAPICH.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_size() -> int | None:
    """The number of ranks an MPI launcher started, from its environment; None if none did."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return None


_world = None


def world() -> Communicator:
    """The communicator over every process of the job (``MPI.COMM_WORLD``); size 1 without MPI.

    mpi4py is imported only when the process was started by an MPI launcher with
    more than one rank, or when ``NANOAE_MPI=1`` says so (``NANOAE_MPI=0``: never).

    With several ranks, the first call also sets up this rank for the job: its
    BLAS and OpenMP threads become its share of the machine's cores
    (``threads.share_cores``), and on the cupy backend it binds its own GPU
    (``use_gpu``), before any array exists. Call it first, before building a model.
    """
    global _world
    if _world is None:
        comm = Communicator(_mpi_world())
        if comm.size > 1:
            from nanoae import backend
            from nanoae.parallel import threads  # noqa: PLC0415

            threads.share_cores(comm.local_size, is_root=comm.is_root)
            if backend.get_backend() == "cupy":
                comm.use_gpu()
        _world = comm
    return _world


def _mpi_world():
    """``MPI.COMM_WORLD`` if this process is one of several MPI ranks, else None."""
    wanted = os.environ.get("NANOAE_MPI", "").strip()
    size = launched_size()
    if wanted == "0" or (wanted != "1" and (size is None or size == 1)):
        return None
    try:
        from mpi4py import MPI  # noqa: PLC0415  (optional dependency)
    except ImportError as exc:
        raise RuntimeError(
            f"this process is one of {size or 'several'} MPI ranks, but mpi4py cannot be imported "
            f"({exc}); without it every rank would train alone on all the data. Install it: "
            'pip install -e ".[mpi]" in your nanoae checkout (or set NANOAE_MPI=0 to run each process on its own)'
        ) from exc
    return MPI.COMM_WORLD


class Communicator:
    """The ranks of a data-parallel job: who am I, and the few collectives training needs.

    rank: this process's number, 0 .. size-1; size: how many processes;
    is_root: rank == 0, the one that prints and writes files.
    ``mpi_comm`` is an mpi4py communicator, or None for a single process.
    """

    def __init__(self, mpi_comm=None):
        self.mpi_comm = mpi_comm
        self.rank = 0 if mpi_comm is None else mpi_comm.Get_rank()
        self.size = 1 if mpi_comm is None else mpi_comm.Get_size()
        self._buffer = None  # the float32 gradient buffer, reused step after step
        self._engines = {}  # array module name -> its engine, created on first use
        self.device = None  # the GPU this rank is bound to (use_gpu), None until then
        # this rank's part of the latest batch it sharded, b_r / B (see shard): the weight of
        # its gradients in average_gradients and ShardedOptimizer.step when none is given
        self.share = 1.0 / self.size
        self.local_rank, self.local_size = self._local_rank()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size})"

    # --- the two calls of a training loop ---------------------------------------------

    def broadcast_parameters(self, params) -> None:
        """Make every rank's ``p.data`` equal to rank 0's (one broadcast of one buffer)."""
        params = list(params)
        if self.size == 1 or not params:
            return
        xp = get_array_module(*[p.data for p in params])
        dtype = numpy.result_type(*[p.data.dtype for p in params])
        buf = xp.empty(sum(int(p.data.size) for p in params), dtype=dtype)
        _pack([p.data for p in params], buf)
        self.engine(buf).broadcast(buf)
        for p, view in zip(params, _views(params, buf)):
            p.data[...] = view

    def average_gradients(self, params, weight: float | None = None) -> None:
        """Replace each ``p.grad`` by ``sum over ranks of weight_r * grad_r``, on every rank.

        weight: this rank's share of the global batch, b_r / B (default
        ``self.share``: that of the latest ``shard``, 1/size before any); the
        weights of all ranks must add up to 1. A rank
        whose shard is empty passes 0 and needs no gradient (``p.grad`` is not
        read). Every rank must call this at every step, with the same params.

        One all-reduce in float32 over one buffer [grad_0, grad_1, ..., weight].
        ``p.grad`` is read afresh at each call (layers may rebind it) and the
        result is written back into it.
        """
        params = list(params)
        weight = self.share if weight is None else float(weight)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"average_gradients: weight must be this rank's share of the "
                             f"global batch, in [0, 1], got {weight}")
        if self.size == 1:
            if weight != 1.0:
                raise ValueError(f"average_gradients: a single process holds the whole batch, "
                                 f"so its weight must be 1, got {weight}")
            return
        buf = self._gradient_buffer(params)
        if weight == 0.0:
            buf[...] = 0  # nothing to contribute; stale or missing gradients stay out of the sum
        else:
            _pack([p.grad for p in params], buf[:-1])
            buf[:-1] *= numpy.float32(weight)
            buf[-1] = weight
        self.engine(buf).allreduce_sum(buf)
        # The weights' sum is checked where reading it is free: on the host. On a GPU,
        # reading it would make every step wait for the device.
        total = float(buf[-1]) if get_array_module(buf) is numpy else 1.0
        if abs(total - 1.0) > 1e-5:
            raise ValueError(f"average_gradients: the ranks' weights add up to {total:.6g}, not 1; "
                             "each rank must pass (its shard's size) / (the global batch size)")
        for p, view in zip(params, _views(params, buf[:-1])):
            if getattr(p, "grad", None) is None or p.grad.shape != p.data.shape:
                p.grad = view.astype(p.data.dtype)  # a rank with an empty shard may have none yet
            else:
                p.grad[...] = view

    # --- sums, checks, choosing a GPU ---------------------------------------------------

    def allreduce_sum(self, values):
        """The sum over ranks of a number or a 1-D list of numbers (float64, on the host).

        For evaluation: each rank adds up its shard's losses and counts, and
        every rank gets the totals. Returns a float for a number, else an array.
        """
        host = numpy.array(to_numpy(values), dtype=numpy.float64)
        scalar = host.ndim == 0
        host = host.reshape(-1)
        if self.size > 1:
            self.engine(host).allreduce_sum(host)
        return float(host[0]) if scalar else host

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (one host all-reduce; none alone)."""
        if self.size == 1:
            return bool(flag)
        return self.allreduce_sum(1.0 if flag else 0.0) > 0

    def barrier(self) -> None:
        """Return on each rank only once every rank has called it (nothing on a single process)."""
        if self.size > 1:
            self.engine(numpy.zeros(0)).barrier()

    def check_agree(self, what: str, value) -> None:
        """Raise ValueError on every rank unless all ranks pass an equal ``value`` (its repr).

        For checks once at the start: the model's config, the data's fingerprint.
        """
        if self.size == 1:
            return
        mine = hashlib.sha256(repr(value).encode()).hexdigest()
        everyone = self.mpi_comm.allgather(mine)
        differ = [r for r, h in enumerate(everyone) if h != everyone[0]]
        if differ:
            raise ValueError(f"the ranks disagree on {what}: ranks {differ} differ from rank 0 "
                             f"(rank {self.rank} has {_short(value)}); every rank must run the "
                             "same model, data and settings")

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a batch of n examples (sizes differ by at most 1).

        Also sets ``self.share`` to that part's size over n, b_r / B: the weight of this
        rank's gradients in the next ``average_gradients`` or ``ShardedOptimizer.step``.
        """
        part = slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)
        if n > 0:
            self.share = (part.stop - part.start) / n
        return part

    def use_gpu(self, device_count: int | None = None) -> int:
        """Bind this rank to its own GPU and return its number (the same on every call).

        The GPUs this process sees (``device_count``; default: ask CUDA) decide:
        one visible GPU -> GPU 0 (a scheduler gave each rank its own, e.g.
        ``--gpus-per-task=1`` or ``CUDA_VISIBLE_DEVICES`` per rank); at least as
        many as the ranks on this machine -> GPU ``local_rank``; fewer -> a
        RuntimeError, since two ranks on one GPU would make NCCL refuse.
        """
        if self.device is not None:
            return self.device
        import cupy  # noqa: PLC0415  (only on the GPU path)

        if device_count is None:
            device_count = cupy.cuda.runtime.getDeviceCount()
        device = gpu_for_rank(self.local_rank, self.local_size, device_count)
        cupy.cuda.Device(device).use()
        self.device = device
        return device

    def check_device(self, params) -> None:
        """Data parallel on CuPy: bind this rank's GPU and check that ``params`` live on it."""
        if self.size == 1:
            return
        device = self.use_gpu()
        found = sorted({p.data.device.id for p in params})
        if found != [device]:
            raise RuntimeError(f"rank {self.rank}: the model's parameters live on GPU(s) {found}, "
                               f"but this rank's GPU is {device}; call "
                               "nanoae.parallel.communicator.world() on the cupy backend (or comm.use_gpu()) "
                               "before building the model, so that each rank builds it on its own GPU")

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (MPI_Abort); a single process just exits."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.size > 1:
            # MPI_Abort kills the launcher's helpers too, and with them any output of this rank
            # they have not forwarded yet (seen under load): give them a moment to pass it on.
            time.sleep(ABORT_GRACE_SECONDS)
            self.mpi_comm.Abort(code)
        os._exit(code)

    def install_excepthook(self) -> None:
        """An uncaught exception on any rank prints ``rank R of N: ...`` and aborts the job.

        (What ``python -m mpi4py script.py`` does; a hand-written loop calls this once.)
        """
        if self.size == 1:
            return

        def hook(kind, exc, tb):
            traceback.print_exception(kind, exc, tb)
            print(_fault_line(self, exc), file=sys.stderr, flush=True)
            self.abort(130 if issubclass(kind, KeyboardInterrupt) else 1)

        sys.excepthook = hook

    # --- the engines ---------------------------------------------------------------------

    def _gradient_buffer(self, params):
        """The float32 buffer for every gradient plus one element for the weight (kept)."""
        xp = get_array_module(*[p.data for p in params])
        n = sum(int(p.data.size) for p in params) + 1
        buf = self._buffer
        if buf is None or buf.size != n or get_array_module(buf) is not xp:
            buf = self._buffer = xp.empty(n, dtype=numpy.float32)
        return buf

    def engine(self, array):
        """The engine that moves arrays like ``array`` between the ranks (``engines/``).

        Created on first use: NCCL's only once a CuPy array exists, so after the
        rank has chosen its GPU.
        """
        name = get_array_module(array).__name__.split(".")[0]
        if name not in self._engines:
            self._engines[name] = engine_for(name)(self.mpi_comm)
        return self._engines[name]

    def _local_rank(self):
        """(rank among the ranks on this machine, how many ranks this machine runs)."""
        if self.size == 1:
            return 0, 1
        from mpi4py import MPI  # noqa: PLC0415

        local = self.mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
        try:
            return local.Get_rank(), local.Get_size()
        finally:
            local.Free()


def gpu_for_rank(local_rank: int, local_size: int, device_count: int) -> int:
    """The GPU of rank ``local_rank`` of the ``local_size`` ranks of a machine that shows
    ``device_count`` GPUs to each process (see ``Communicator.use_gpu``)."""
    if device_count == 1:
        return 0
    if device_count >= local_size:
        return local_rank
    raise RuntimeError(f"--backend cupy: this machine runs {local_size} ranks but each sees "
                       f"{device_count} GPU(s); start at most one rank per GPU "
                       f"(mpiexec -n {max(1, device_count)} ...), give each rank its own GPU "
                       "(CUDA_VISIBLE_DEVICES, --gpus-per-task=1), or use --backend numpy")


def _pack(arrays, buf) -> None:
    """Copy ``arrays`` one after the other into the flat ``buf`` (casting to its dtype)."""
    offset = 0
    for a in arrays:
        buf[offset:offset + a.size] = a.reshape(-1)
        offset += a.size


def _views(params, buf):
    """The pieces of ``buf`` shaped like each parameter (the inverse of _pack)."""
    offset = 0
    for p in params:
        n = int(p.data.size)
        yield buf[offset:offset + n].reshape(p.data.shape)
        offset += n


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _fault_line(comm: Communicator, exc: BaseException) -> str:
    what = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else (
        f"{type(exc).__name__}: {exc}")
    return f"nanoae: rank {comm.rank} of {comm.size}: {what}; ending every rank of the job"


@contextlib.contextmanager
def abort_on_error(comm: Communicator):
    """Inside: an exception or Ctrl-C on this rank ends the whole job (one line, MPI_Abort).

    With a single process it does nothing: the exception propagates as usual.
    A ``SystemExit`` (e.g. argparse's) passes through: every rank raises it alike;
    so does ``errors.Interrupted``, which ``fit`` raises on every rank at the same
    step after saving.
    """
    from nanoae.errors import Interrupted  # noqa: PLC0415

    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if comm.size == 1 or isinstance(exc, Interrupted):
            raise
        if not isinstance(exc, KeyboardInterrupt) and not _is_user_error(exc):
            traceback.print_exc()
        print(_fault_line(comm, exc), file=sys.stderr, flush=True)
        comm.abort(130 if isinstance(exc, KeyboardInterrupt) else 1)


def _is_user_error(exc) -> bool:
    """Errors whose message says it all (no traceback needed): nanoae's own, bad values and
    refusals (a programming error, e.g. a TypeError or an AttributeError, shows its traceback)."""
    from nanoae.errors import NanoaeError  # noqa: PLC0415

    return isinstance(exc, (NanoaeError, ValueError, RuntimeError))


def fingerprint(*arrays) -> str:
    """A short digest of arrays' shapes, dtypes and bytes, to compare data across ranks."""
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"None")
            continue
        host = numpy.ascontiguousarray(to_numpy(a))
        digest.update(f"{host.shape}{host.dtype}".encode())
        digest.update(host.data)
    return digest.hexdigest()[:16]
