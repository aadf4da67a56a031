"""The sharded optimizer (ZeRO-1, nanoae/parallel/zero.py) on N ranks equals the plain one on 1.

Ranks are threads here (tests/helpers/fake_nccl.py's ThreadEngine, a third engine);
tests/test_communicator.py runs the same under mpiexec, through fit.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.engine_checks import check_engine
from helpers.fake_nccl import ThreadEngine, _Rendezvous, run_threads

import nanoae as nn
from nanoae.parallel.zero import ShardedOptimizer, SplitState, range_of

FEATURES, HIDDEN, CLASSES, N = 12, 16, 5, 64  # 12*16 + 16 + 16*5 + 5 = 293 values: odd


def _model():
    rng = np.random.default_rng(1)
    return nn.Sequential(nn.Dense(FEATURES, HIDDEN, rng=rng), nn.ReLU(),
                         nn.Dense(HIDDEN, CLASSES, rng=rng), nn.Softmax())


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(N, FEATURES)).astype(np.float32),
            rng.integers(0, CLASSES, size=N).astype(np.int64))


def _train(rank, size, comm, *, steps=20, batch=8, make=nn.Adam, rebind_at=None, gather=True):
    """``steps`` steps on this rank's shard of each batch; sharded when comm is given
    (then the whole state is gathered into the optimizer at the end, if ``gather``)."""
    x, y = _data()
    model, loss = _model(), nn.CrossEntropy()
    optimizer = make(model.parameters())
    step = ShardedOptimizer(optimizer, comm) if comm is not None else None
    for i in range(steps):
        start = (i * batch) % N
        batch_idx = np.arange(start, start + batch)
        # this rank's shard; comm.shard also records its share of the batch, the weight that
        # ShardedOptimizer.step gives its gradients
        mine = batch_idx if comm is None else batch_idx[comm.shard(batch)]
        if i == rebind_at:  # a user rebinds every weight array: harmless
            for p in model.parameters():
                p.data = p.data.copy()
        if len(mine):
            loss(model(x[mine]), y[mine])
            model.backward_from_loss(loss, input_grad=False)
        if step is None:
            optimizer.step()
        else:
            step.step()
    if step is not None and gather:
        step.gather_state()
    return model, optimizer, step


def _assert_close(a_model, b_model):
    for a, b in zip(a_model.parameters(), b_model.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_n_ranks_equal_one_process_after_20_steps_and_the_state_is_gathered(size):
    one_model, one_opt, _ = _train(0, 1, None)
    start = _model()
    results = run_threads(size, lambda r, comm: _train(r, size, comm))
    for model, optimizer, step in results:
        _assert_close(model, one_model)
        assert optimizer.t == one_opt.t == 20
        for key in ("m", "v"):  # the whole state, gathered into the user's optimizer
            np.testing.assert_allclose(optimizer.state_dict()[key], one_opt.state_dict()[key],
                                       rtol=1e-5, atol=1e-9)
    assert not np.allclose(one_model.parameters()[0].data, start.parameters()[0].data)


@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_each_rank_keeps_its_range_of_the_state(size):
    results = run_threads(size, lambda r, comm: _train(r, size, comm, steps=1, gather=False))
    total = 293
    part = -(-total // size)
    for rank, (_, optimizer, step) in enumerate(results):
        assert step.range == range_of(rank, size, total) == slice(rank * part, (rank + 1) * part)
        assert step.state_bytes() == 2 * part * 4  # Adam's m and v in float32, this range only
        assert isinstance(optimizer.m, SplitState) and isinstance(optimizer.v, SplitState)
        with pytest.raises(RuntimeError, match=r"Adam.m is split across the ranks .* whole again when fit ends"):
            optimizer.state_dict()
    ranges = [results[r][2].range for r in range(size)]
    assert ranges[-1].stop >= total and ranges[-1].stop - total < size  # padding: fewer than N


def test_rebinding_a_parameter_is_harmless():
    one_model, _, _ = _train(0, 1, None)
    results = run_threads(3, lambda r, comm: _train(r, 3, comm, rebind_at=7))
    for model, _, step in results:
        _assert_close(model, one_model)
        for p, view in zip(model.parameters(), step.views):
            assert p.data is view  # adopted back into the flat buffer


class RebindingSGD(nn.SGD):
    """A learner's optimizer that rebinds ``p.data`` instead of updating it in place."""

    def update(self):
        for p in self.params:
            p.data = p.data - self.lr * p.grad


def test_an_optimizer_that_rebinds_its_parameter_still_updates_every_rank():
    def make(params):
        return RebindingSGD(params, lr=0.1)

    one_model, _, _ = _train(0, 1, None, make=make)
    for model, _, _ in run_threads(2, lambda r, comm: _train(r, 2, comm, make=make)):
        _assert_close(model, one_model)


def test_without_the_sum_of_the_ranges_the_result_differs():
    # the test can fail: a broken engine whose reduce-scatter forgets the other ranks
    class LocalOnly(ThreadEngine):
        def reduce_scatter_sum(self, send, recv):
            self.rendezvous.exchange(self.rank, None)
            c = recv.size
            recv[...] = send[self.rank * c:(self.rank + 1) * c]

    rendezvous = _Rendezvous(2)
    one_model, _, _ = _train(0, 1, None)

    from helpers.fake_nccl import ThreadComm  # noqa: PLC0415

    def body(rank, _comm):
        return _train(rank, 2, ThreadComm(LocalOnly(rank, rendezvous)))

    results = run_threads(2, body)
    with pytest.raises(AssertionError):
        _assert_close(results[0][0], one_model)


def test_the_thread_engine_passes_the_interface_tests():
    run_threads(3, lambda r, comm: check_engine(comm.engine(None), np.asarray))


def test_parameters_of_two_dtypes_are_refused():
    a = nn.Parameter(np.zeros(3, np.float32))
    b = nn.Parameter(np.zeros(2, np.float64))
    with pytest.raises(ValueError, match=r"one dtype.*\['float32', 'float64'\]"):
        run_threads(1, lambda r, comm: ShardedOptimizer(nn.SGD([a, b], lr=0.1), comm))


def test_equal_shards_need_no_weight_and_a_rank_may_have_an_empty_shard():
    # the weight before any comm.shard is 1/size; a batch of 2 on 3 ranks leaves rank 0 without
    # examples
    one_model, _, _ = _train(0, 1, None, batch=2)
    for model, _, _ in run_threads(3, lambda r, comm: _train(r, 3, comm, batch=2)):
        _assert_close(model, one_model)

    def unweighted(rank, comm):
        x, y = _data()
        model, loss = _model(), nn.CrossEntropy()
        step = ShardedOptimizer(nn.SGD(model.parameters(), lr=0.1), comm)
        mine = slice(4 * rank, 4 * rank + 4)  # 2 ranks x 4 examples: a batch of 8
        loss(model(x[mine]), y[mine])
        model.backward_from_loss(loss, input_grad=False)
        step.step()
        return model

    one_model, _, _ = _train(0, 1, None, steps=1, make=lambda ps: nn.SGD(ps, lr=0.1))
    for model in run_threads(2, unweighted):
        _assert_close(model, one_model)


def test_one_parameter_is_sharded_too_and_the_range_is_named():
    w = nn.Parameter(np.arange(5, dtype=np.float32), name="w")
    w.grad = np.ones(5, np.float32)

    def body(rank, comm):
        p = nn.Parameter(w.data.copy(), name="w")
        p.grad = w.grad.copy()
        step = ShardedOptimizer(nn.SGD([p], lr=0.5), comm)
        step.step()
        return p.data.copy(), step.part.name, repr(step)

    results = run_threads(2, body)
    for rank, (data, name, text) in enumerate(results):
        np.testing.assert_allclose(data, np.arange(5) - 0.5)
        assert name == f"range {rank} of 2"
        assert text == f"ShardedOptimizer(SGD, rank {rank} of 2: values {3 * rank}..{3 * rank + 2} of 5)"


def test_a_rank_holds_one_nth_of_the_state_and_gets_it_whole_back_for_a_moment():
    """The user's whole-size m and v are freed (weak references to them die), held again inside
    ``whole_state()``, let go of after it, and kept for good by ``gather_state``."""
    import gc
    import weakref

    size = 4
    total = FEATURES * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES
    part = -(-total // size)

    def run(rank, comm):
        model = _model()
        x, y = _data()
        optimizer, loss = nn.Adam(model.parameters()), nn.CrossEntropy()
        loss(model(x[:8]), y[:8])
        model.backward_from_loss(loss, input_grad=False)
        optimizer.step()  # the state of every parameter exists
        whole = [weakref.ref(a) for a in optimizer.m + optimizer.v]
        step = ShardedOptimizer(optimizer, comm)
        gc.collect()
        freed = [ref() is None for ref in whole]
        held = step.state_bytes()
        with step.whole_state() as gathered:
            inside = gathered is optimizer, step.state_bytes(), optimizer.state_dict()
        after = isinstance(optimizer.m, SplitState), step.state_bytes()
        step.gather_state()
        kept = [a.shape for a in optimizer.m] == [p.data.shape for p in model.parameters()]
        return freed, held, inside, after, kept

    for freed, held, inside, after, kept in run_threads(size, run):
        assert all(freed) and held == 2 * 4 * part  # this range's m and v, float32: nothing more
        same, bytes_inside, state = inside
        assert same and bytes_inside == 2 * 4 * part + 2 * 4 * total
        assert state["m"].shape == (total,) and state["t"] == 1
        assert after == (True, 2 * 4 * part) and kept
