"""The sharded optimizer (ZeRO stage 1): each rank updates 1/N of the parameters.

In plain data parallel every rank all-reduces every gradient and then repeats
the whole optimizer step over every parameter. Here, as in Megatron-LM's
distributed optimizer (one flat buffer cut into contiguous per-rank ranges):

    flat  = [w_0 | w_1 | ... | pad]       every parameter, back to back, padded to N * c
    range r = flat[r * c : (r + 1) * c]   rank r's part, c = ceil(P / N)

    1. grads <- [weight * g_0 | weight * g_1 | ... | 0]       (pack, as for the all-reduce)
    2. reduce-scatter: rank r receives sum over ranks of grads[range r]
    3. the plain optimizer (optim.py, unchanged) steps over ONE Parameter whose
       data is range r of ``flat`` and whose grad is what step 2 received
    4. all-gather: every rank's ``flat`` gets every updated range

The bytes on the wire are those of the all-reduce (a ring all-reduce *is* a
reduce-scatter followed by an all-gather), but each rank's optimizer reads and
writes c = P/N weights and keeps c values of each state array (Adam's m and v)
instead of P. The padding (at most N - 1 zeros) has zero gradient, so the
optimizer keeps it at zero; it gives every rank an equal count, which NCCL requires.

Who owns what. ``flat`` owns the weights: each ``p.data`` of the model is a view
of its piece of ``flat``, so step 4 updates the model with no copy. A view can
be broken by rebinding (``p.data = new_array``); that is harmless here: at the
start of every step a parameter whose ``data`` is no longer its view has its
new values copied into ``flat`` and is given its view back, and an optimizer
that rebinds the range's ``data`` instead of updating it in place has its
result copied likewise. No rule to remember.

The state. The user's optimizer (``optimizer``) keeps its hyper-parameters;
this class takes this rank's range of its state (the arrays its class names in
``state_names``) when it is created (a resumed run's state too) and lets go of
the whole-size arrays, so that a rank holds 1/N of the state, not 1/N more.
Until ``gather_state()`` gives them back, ``optimizer.m`` (and each other state
name) is a ``SplitState`` that says where the state went. Before every step
every hyper-parameter of ``optimizer`` (``lr``, ``betas``, ``eps``,
``weight_decay``, ``momentum``, ...: all it holds but its parameters, state and
step count) is copied onto the optimizer that steps the range, as PyTorch's
ZeroRedundancyOptimizer syncs its param groups: a callback that changes any of
them mid-run changes the run under MPI exactly as in one process.
``gather_state()`` writes the whole updated state back into ``optimizer`` (``t``,
``m``, ``v``, ...), in the format of a single process, so that a checkpoint
saved from it resumes on any number of ranks; ``with whole_state():`` does the
same for a moment (a checkpoint), after which each rank holds its range alone
again. ``fit`` saves checkpoints inside ``whole_state()`` and calls
``gather_state()`` when training ends.
"""

from __future__ import annotations

import contextlib
import copy

from nanoae.backend import get_array_module
from nanoae.parameter import Parameter

__all__ = ["ShardedOptimizer", "SplitState", "range_of"]


def range_of(rank: int, size: int, total: int) -> slice:
    """Rank ``rank``'s contiguous range of a flat buffer of ``total`` values padded to
    ``size`` equal parts of ceil(total / size)."""
    part = -(-total // size)
    return slice(rank * part, (rank + 1) * part)


class ShardedOptimizer:
    """ZeRO-1 over ``comm``: its ``step()`` replaces ``average_gradients`` + ``optimizer.step()``.

    It is stepped like any optimizer, ``step()``; this rank's gradients weigh
    ``comm.share`` in the sum (b_r / B, set by ``comm.shard`` when the batch was split).

    optimizer: an ``optim.Optimizer`` (Adam, AdamW, SGD, or a learner's own
        subclass that names its state in ``state_names``) over the model's
        parameters, identical on every rank; all parameters of one dtype.
    comm: the ``communicator.Communicator`` of the job; its engine moves the buffers.
    Every rank must create it at the same point, after the weights agree
    (``comm.broadcast_parameters``), and call ``step`` at every step.
    """

    def __init__(self, optimizer, comm):
        self.optimizer, self.comm = optimizer, comm
        self.params = list(optimizer.params)
        dtypes = sorted({str(p.data.dtype) for p in self.params})
        if len(dtypes) != 1:
            raise ValueError(f"ShardedOptimizer: the parameters must share one dtype (one flat "
                             f"buffer holds them all), got {dtypes}")
        xp = get_array_module(*[p.data for p in self.params])
        dtype = self.params[0].data.dtype
        self.total = sum(int(p.data.size) for p in self.params)
        self.range = range_of(comm.rank, comm.size, self.total)
        part = self.range.stop - self.range.start
        self.flat = xp.zeros(part * comm.size, dtype=dtype)  # owns the weights (see module doc)
        self.grads = xp.zeros(part * comm.size, dtype=dtype)  # the padding stays 0
        self.views = _pieces(self.params, self.flat)
        self.grad_pieces = _pieces(self.params, self.grads)
        for p, view in zip(self.params, self.views):
            view[...] = p.data
            p.data = view
        self.part = Parameter(self.flat[self.range], name=f"range {comm.rank} of {comm.size}")
        self._part_view = self.part.data
        # the same optimizer (class, hyper-parameters, t) over this rank's range and its state
        self.inner = copy.copy(optimizer)
        self.inner.params = [self.part]
        for name in optimizer.state_names:
            whole = xp.zeros(part * comm.size, dtype=dtype)
            for a, piece in zip(getattr(optimizer, name), _pieces(self.params, whole)):
                piece[...] = a
            setattr(self.inner, name, [whole[self.range].copy()])
        self._let_go_of_whole_state()

    def __repr__(self) -> str:
        return (f"ShardedOptimizer({type(self.optimizer).__name__}, rank {self.comm.rank} of "
                f"{self.comm.size}: values {self.range.start}..{self.range.stop - 1} of {self.total})")

    @property
    def t(self) -> int:
        return self.inner.t

    def step(self) -> None:
        """One step: the weighted sum of every rank's gradients, then the update of every weight.

        This rank's weight is ``comm.share``, its part of the global batch, b_r / B;
        0 for an empty shard, whose gradients are then not read.
        """
        weight = self.comm.share
        engine = self.comm.engine(self.flat)
        self._adopt_rebound_parameters()
        if weight == 0.0:
            self.grads[...] = 0
        else:
            xp, w = get_array_module(self.grads), self.grads.dtype.type(weight)
            for p, piece in zip(self.params, self.grad_pieces):
                xp.multiply(p.grad, w, out=piece)  # piece <- weight * grad: copied and weighted in one pass
        engine.reduce_scatter_sum(self.grads, self.part.grad)
        vars(self.inner).update(self.hyperparameters())  # the user's settings, as they are now
        self.inner.step()
        if self.part.data is not self._part_view:  # an optimizer that rebinds instead of updating
            self._part_view[...] = self.part.data
            self.part.data = self._part_view
        engine.allgather(self.flat)

    def hyperparameters(self) -> dict:
        """Everything ``optimizer`` holds but its parameters, its state and its step count."""
        own = {"params", "t", *self.optimizer.state_names}
        return {name: value for name, value in vars(self.optimizer).items() if name not in own}

    def _adopt_rebound_parameters(self) -> None:
        """A parameter given a new ``data`` array: its values go into ``flat``, its view comes back."""
        for p, view in zip(self.params, self.views):
            if p.data is not view:
                view[...] = p.data
                p.data = view

    def gather_state(self) -> None:
        """Write the whole optimizer state into ``optimizer`` (every rank must call this).

        ``optimizer`` gets new whole-size arrays, one per parameter (pieces of one
        new buffer per state name), as it had before this class took them; its
        ``t`` is the steps taken.
        """
        engine = self.comm.engine(self.flat)
        xp = get_array_module(self.flat)
        for name in self.optimizer.state_names:
            whole = xp.empty_like(self.flat)
            whole[self.range] = getattr(self.inner, name)[0]
            engine.allgather(whole)
            setattr(self.optimizer, name, _pieces(self.params, whole))  # a new buffer per call: no sharing
        self.optimizer.t = self.inner.t

    @contextlib.contextmanager
    def whole_state(self):
        """Inside: ``optimizer`` holds the whole state (``gather_state``; every rank must
        enter). Afterwards each rank holds only its range again."""
        self.gather_state()
        try:
            yield self.optimizer
        finally:
            self._let_go_of_whole_state()

    def _let_go_of_whole_state(self) -> None:
        """Drop ``optimizer``'s whole-size state arrays: this rank steps only its range."""
        for name in self.optimizer.state_names:
            setattr(self.optimizer, name, SplitState(name, self))

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds: its range (1/N of a single process's),
        plus the whole-size arrays, if ``optimizer`` holds them now (after ``gather_state``)."""
        held = [a for name in self.inner.state_names for a in getattr(self.inner, name)]
        for name in self.optimizer.state_names:
            state = getattr(self.optimizer, name)
            held += [] if isinstance(state, SplitState) else list(state)
        return sum(int(a.nbytes) for a in held)


class SplitState:
    """What an optimizer's state name (``optimizer.m``) holds while a ``ShardedOptimizer``
    steps it: each rank keeps its own range, so there is no whole array to read here."""

    def __init__(self, name: str, owner: ShardedOptimizer):
        self.name, self.owner = name, owner

    def __repr__(self) -> str:
        return f"SplitState({self.name!r}: split across the ranks by {self.owner!r})"

    def _refuse(self, *args):
        raise RuntimeError(
            f"{type(self.owner.optimizer).__name__}.{self.name} is split across the ranks of a "
            f"data-parallel run ({self.owner!r}); it is whole again when fit ends, or inside "
            "`with sharded.whole_state():` (every rank must enter it)")

    __iter__ = __len__ = __getitem__ = _refuse


def _pieces(params, flat):
    """The pieces of ``flat`` shaped like each parameter, back to back from offset 0."""
    pieces, offset = [], 0
    for p in params:
        n = int(p.data.size)
        pieces.append(flat[offset:offset + n].reshape(p.data.shape))
        offset += n
    return pieces
