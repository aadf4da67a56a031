"""The contenders of ``bench.py``: what each one runs, inside its own child process.

Each ``run_*`` function trains ``epochs`` epochs (the first is the driver's warm-up)
of one workload in mini-batches of ``batch`` and returns ``(seconds per epoch, note)``.
It raises ``Skip``, with the reason, when its package or device is missing. Heavy
imports happen inside the functions, so a child loads only what its contender needs
(and its peak RSS shows only that).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy

WIDTHS = {"ae": (784, 128, 64, 32, 64, 128, 784), "head": (32, 64, 10)}
BATCH, LR = 256, 1e-3  # BATCH: the default of bench.py --batch


class Skip(Exception):
    """A contender that cannot run here; the message says why."""


def gemm_flops(workload: str, n: int) -> float:
    """Floating-point operations of the floor's products for one epoch of n examples."""
    w = WIDTHS[workload]
    sizes = [a * b for a, b in zip(w[:-1], w[1:])]
    return 2.0 * n * (2 * sum(sizes) + sum(sizes[1:]))  # forward + dW, dX except layer 1


def blas_info() -> dict:
    """NumPy's BLAS as threadpoolctl sees it (library, version, kernel, threads)."""
    info = {"numpy": numpy.__version__}
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout differs across NumPy versions
        info["numpy_blas"] = "unknown"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {**info, "blas_threads": os.cpu_count(), "blas_kernel": "unknown (no threadpoolctl)"}
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if pools:
        p = pools[0]
        info.update(blas_threads=p["num_threads"], blas_kernel=p.get("architecture", "n/a"),
                    blas_lib=f"{p['internal_api']} {p.get('version')} ({Path(p['filepath']).name})")
    return info


def child_info(device: str) -> dict:
    """What the header prints; run in a child so it sees the children's environment."""
    info = blas_info()
    try:
        import torch
        info.update(torch=torch.__version__, torch_default_threads=torch.get_num_threads())
        if device == "cuda":
            info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    if device == "cuda":
        from nanoae import backend
        info["cupy"] = None if backend.cupy_available() else backend.cupy_unavailable_reason()
        if info["cupy"] is None:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            info["cupy"] = f"CuPy {cupy.__version__} on {props['name'].decode()}"
            info["cupy_ok"] = True
    return info


def gpu_memory() -> dict:
    """Peak GPU memory of this process in MiB, from the allocators it used; call at its end.

    gpu_mib is what the process's allocator held at its peak, alike for both: CuPy's
    memory pool keeps every block it got from the driver until told to free them, so its
    ``total_bytes()`` at the end is its high-water mark; PyTorch's caching allocator
    reports ``max_memory_reserved()``, and ``max_memory_allocated()`` (bytes in live
    tensors) as gpu_allocated_mib. Neither counts the CUDA context nor the libraries'
    workspaces (cuBLAS, kernels), so gpu_process_mib adds the device memory the whole
    process holds at its end, from NVML (pynvml, where installed) or else from
    ``cudaMemGetInfo`` (total - free: the whole device, exact when this process is alone
    on it). Empty when no GPU library was used.
    """
    mib, out = 2.0 ** 20, {}
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        out["gpu_mib"] = cupy.get_default_memory_pool().total_bytes() / mib
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        out["gpu_mib"] = torch.cuda.max_memory_reserved() / mib
        out["gpu_allocated_mib"] = torch.cuda.max_memory_allocated() / mib
    if out:
        out.update(_process_device_memory(cupy, torch))
    return out


def _process_device_memory(cupy, torch) -> dict:
    """{"gpu_process_mib": ..., "gpu_process_source": "nvml" | "memGetInfo"}, or {}."""
    import os  # noqa: PLC0415

    mib = 2.0 ** 20
    try:
        import pynvml  # noqa: PLC0415  (optional: nvidia-ml-py)

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                return {"gpu_process_mib": proc.usedGpuMemory / mib, "gpu_process_source": "nvml"}
    except Exception:  # no pynvml, no permission, or a driver without per-process figures
        pass
    if cupy is not None:
        free, total = cupy.cuda.runtime.memGetInfo()
    elif torch is not None:
        free, total = torch.cuda.mem_get_info()
    else:
        return {}
    return {"gpu_process_mib": (total - free) / mib, "gpu_process_source": "memGetInfo"}


def load_data(workload: str, n: int):
    """(x, y): uint8 images (n, 28, 28) and None, or float32 codes (n, 32) and int64 labels."""
    if workload == "head":
        rng = numpy.random.default_rng(0)
        return rng.standard_normal((n, 32), dtype=numpy.float32), rng.integers(0, 10, n)
    from nanoae.errors import DatasetError
    from nanoae.fashion.data import load_fashion_mnist
    try:
        images, _ = load_fashion_mnist("train", download=False, progress=False)
    except DatasetError as e:
        raise Skip(f"Fashion-MNIST not found: {e}") from e
    return (images[:n].copy() if n < len(images) else images), None


def as_float(x):
    """uint8 images -> float32 (n, 784) in [0, 1], for the peers that want float data."""
    return numpy.multiply(x.reshape(len(x), -1), numpy.float32(1 / 255), dtype=numpy.float32)


def run_nanoae(workload, x, y, epochs, device, batch, raw=False, plain=False, watch=False):
    """nanoae's models through ``fit`` (or, ``raw``, the bare forward/loss/backward/step loop;
    ``plain``: the learner's loop, ``loss(pred, target)`` and ``model.backward(loss.backward())``,
    with no fused gradient, no loss from logits, and the data gradient computed; ``watch``:
    ``fit`` with ``watch.Watch`` recording its default diagnostics, to price them)."""
    import nanoae
    from nanoae import backend
    from nanoae.fashion.models import Autoencoder, Classifier
    from nanoae.train.callbacks import Progress
    from nanoae.train.loop import as_batch, fit, loss_value
    try:
        backend.set_backend("cupy" if device == "cuda" else "numpy")
    except RuntimeError as e:
        raise Skip(str(e)) from e
    if workload == "ae":
        model = Autoencoder((784, 128, 64, 32), code_activation="relu", seed=0)
        loss = nanoae.BinaryCrossEntropy(check=False)
    else:
        model = Classifier(32, (64,), 10, seed=0)
        loss = nanoae.CrossEntropy(check=False)
    opt = nanoae.Adam(model.parameters(), lr=LR)
    if not raw:  # fit's own per-epoch seconds; it syncs once per epoch to read the losses
        from nanoae.train.watch import Watch  # noqa: PLC0415
        extra = [Watch(model)] if watch else []
        hist = fit(model, loss, opt, x, y, epochs=epochs, batch_size=batch, seed=0,
                   callbacks=[Progress(bar=False, verbose=False), *extra])
        return hist["seconds"], f"fit{' + Watch' if watch else ''}, {backend.get_backend()}"
    # The same steps without fit's bookkeeping (loss history, accuracy, progress bar).
    xp, n, seconds = backend.xp(), len(x), []
    x, y = backend.to_device(x), None if y is None else backend.to_device(y)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = xp.asarray(numpy.random.default_rng([0, epoch]).permutation(n))
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb = as_batch(x[idx])
            pred = model(xb)
            if plain:
                loss(pred, xb if y is None else y[idx])
                model.backward(loss.backward())
            else:  # the fused pair's loss reads its logits, as fit does
                loss_value(model, loss, pred, xb if y is None else y[idx])
                model.backward_from_loss(loss, input_grad=False)
            opt.step()
        backend.synchronize()
        seconds.append(time.perf_counter() - t0)
    return seconds, f"{'plain' if plain else 'raw'} loop, {backend.get_backend()}"


def run_torch(workload, x, y, epochs, device, batch, tuned=False):
    """PyTorch eager. Plain: Sigmoid + BCELoss, default Adam. Tuned: logits + BCEWithLogitsLoss,
    fused Adam (foreach where fused is refused), ``zero_grad(set_to_none=True)``."""
    threads = blas_info().get("blas_threads") or os.cpu_count()  # before torch loads its own
    try:
        import torch
    except ImportError as e:
        raise Skip(f"PyTorch is not installed ({e})") from e
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("torch.cuda.is_available() is False")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn, dev, w = torch.nn, torch.device(device), WIDTHS[workload]
    layers = []
    for i, (a, b) in enumerate(zip(w[:-1], w[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(w) - 2 else [])
    if workload == "ae":
        X, Y = torch.from_numpy(as_float(x)).to(dev), None
        if tuned:
            crit = nn.BCEWithLogitsLoss()
        else:
            layers.append(nn.Sigmoid())
            crit = nn.BCELoss()
    else:
        X, Y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
        crit = nn.CrossEntropyLoss()  # on logits, the idiomatic form in both variants
    model = nn.Sequential(*layers).to(dev)
    note = f"eager, {threads} threads"
    if not tuned:
        opt = torch.optim.Adam(model.parameters(), lr=LR)
    else:
        try:
            opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
            note += ", Adam(fused=True)"
        except (RuntimeError, ValueError) as e:
            opt = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)
            note += f", Adam(foreach=True): fused refused ({e})"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n, seconds = len(X), []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb = X[idx]
            if tuned:
                opt.zero_grad(set_to_none=True)
            else:
                opt.zero_grad()
            loss = crit(model(xb), xb if Y is None else Y[idx])
            loss.backward()
            opt.step()
            with torch.no_grad():
                total += loss.detach()  # no .item() per step: one host sync per epoch, as nanoae
        total.item()
        sync()
        seconds.append(time.perf_counter() - t0)
    return seconds, note


def run_sklearn(workload, x, y, epochs, device, batch):
    """scikit-learn's MLP of the same shape; one ``partial_fit`` per epoch."""
    if device == "cuda":
        raise Skip("scikit-learn runs on the CPU only")
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise Skip(f"scikit-learn is not installed ({e})") from e
    common = dict(hidden_layer_sizes=WIDTHS[workload][1:-1], activation="relu", solver="adam",
                  batch_size=batch, learning_rate_init=LR, shuffle=True, random_state=0)
    if workload == "ae":
        X = as_float(x)
        est, fit_args, note = MLPRegressor(**common), (X, X), "MLPRegressor: squared error, identity out"
    else:
        est, fit_args = MLPClassifier(**common), (x, y)
        note = "MLPClassifier: softmax + log-loss"
    kwargs = {} if workload == "ae" else {"classes": numpy.arange(10)}
    seconds = []
    for _ in range(epochs):  # one partial_fit = one pass over all the data
        t0 = time.perf_counter()
        est.partial_fit(*fit_args, **kwargs)
        seconds.append(time.perf_counter() - t0)
    return seconds, note


def run_floor(workload, x, y, epochs, device, batch):
    """Only the matrix products of an epoch, into preallocated outputs (see bench.py)."""
    xp = numpy
    if device == "cuda":
        try:
            import cupy as xp
        except ImportError as e:
            raise Skip(f"CuPy is not importable ({e})") from e
    sync = (lambda: xp.cuda.get_current_stream().synchronize()) if device == "cuda" else (lambda: None)
    rng, w, n = numpy.random.default_rng(0), WIDTHS[workload], len(x)
    W = [xp.asarray(rng.standard_normal((a, b), dtype=numpy.float32) / math.sqrt(a))
         for a, b in zip(w[:-1], w[1:])]
    acts = [xp.asarray(rng.random((batch, k), dtype=numpy.float32)) for k in w]  # acts[0]: input
    grads = [xp.asarray(rng.standard_normal((batch, k), dtype=numpy.float32)) for k in w[1:]]
    dW = [xp.empty_like(m) for m in W]
    dX = [xp.empty((batch, k), dtype=numpy.float32) for k in w[:-1]]
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            b = min(batch, n - i)
            for k, m in enumerate(W):  # forward: (b, in) @ (in, out) -> (b, out)
                xp.matmul(acts[k][:b], m, out=acts[k + 1][:b])
            for k in range(len(W) - 1, -1, -1):
                xp.matmul(acts[k][:b].T, grads[k][:b], out=dW[k])  # (in, b) @ (b, out)
                if k > 0:  # the data needs no gradient
                    xp.matmul(grads[k][:b], W[k].T, out=dX[k][:b])  # (b, out) @ (out, in)
        sync()
        seconds.append(time.perf_counter() - t0)
    return seconds, f"{xp.__name__} matmul(out=), {gemm_flops(workload, n) / 1e9:.1f} GFLOP/epoch"


RUNNERS = {
    "nanoae": run_nanoae,
    "nanoae-watch": lambda *a: run_nanoae(*a, watch=True),
    "nanoae-raw": lambda *a: run_nanoae(*a, raw=True),
    "nanoae-plain": lambda *a: run_nanoae(*a, raw=True, plain=True),
    "torch-plain": run_torch,
    "torch-tuned": lambda *a: run_torch(*a, tuned=True),
    "sklearn": run_sklearn,
    "floor": run_floor,
}
