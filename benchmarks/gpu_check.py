"""The Python parts of ``gpu_check.sh``: probe the GPU, print versions, judge the results.

    python benchmarks/gpu_check.py probe              "ok", or in one line why no GPU can be used (exit 2)
    python benchmarks/gpu_check.py versions           GPU, driver, CUDA, CuPy, PyTorch, NumPy, Python
    python benchmarks/gpu_check.py compare NUMPY_METRICS CUPY_METRICS
    python benchmarks/gpu_check.py bench BENCH_JSON...

``compare`` reads the ``metrics.json`` of ``nanoae demo --quick`` run on each backend
and checks that the GPU run learned what the CPU run learned: the autoencoder's
test BCE within 1 % (relative), each test accuracy within 1 point. Both runs
draw the same random numbers (weights, order, flips and shifts from NumPy on the
host; the masks from a counter-based Philox on the host, moved to the device
once per epoch, augment.mask_bits), so they differ by rounding alone: the
devices sum in different orders. (The bounds are not a measured spread.) ``bench`` reads the JSON of
``bench.py --device cuda`` and fails unless nanoae ran on every workload;
it prints nanoae's ratios to PyTorch CUDA and the GPU memory of each.

Exit status: 0 agreement (or a GPU), 1 a disagreement or a failed run, 2 files that
cannot be read (or no GPU).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELATIVE = {"ae_test_bce": 0.01}  # key: largest |cupy - numpy| / |numpy|
POINTS = {"clf_frozen_test_accuracy": 0.01, "clf_finetune_test_accuracy": 0.01}  # 0.01 = 1 point
PEERS = ("torch-plain", "torch-tuned")


def one_line(text) -> str:
    return " ".join(str(text).split())


def probe() -> int:
    sys.path.insert(0, str(REPO))  # this checkout's nanoae, as gpu_check.sh's PYTHONPATH says
    try:
        from nanoae import backend
    except Exception as exc:  # a broken checkout or a missing NumPy: say so in one line
        print(one_line(f"cannot import nanoae from {REPO}: {type(exc).__name__}: {exc}"))
        return 2
    if not backend.cupy_available():
        print(one_line(backend.cupy_unavailable_reason()))
        return 2
    try:
        _probe_kernels_and_cublas()
        _warm_kernel_cache()
    except Exception as exc:  # NVRTC or cuBLAS missing or broken: every later part would fail
        print(one_line(f"CuPy sees a GPU but cannot compute: {type(exc).__name__}: {exc}"))
        return 2
    print("ok")
    return 0


def _probe_kernels_and_cublas() -> None:
    """Compile one kernel (NVRTC) and multiply two matrices (cuBLAS), checked on the host."""
    import cupy
    import numpy

    double = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1", "nanoae_probe")
    a = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    host = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    if not numpy.array_equal(cupy.asnumpy(double(a)), 2 * host + 1):
        raise RuntimeError("a compiled kernel returned wrong values")
    for dtype in (numpy.float32, numpy.float64):
        product = cupy.asnumpy(a.astype(dtype) @ a.astype(dtype).T)  # cuBLAS gemm
        if not numpy.allclose(product, host.astype(dtype) @ host.astype(dtype).T):
            raise RuntimeError(f"cuBLAS returned wrong values in {numpy.dtype(dtype).name}")


def _warm_kernel_cache() -> None:
    """Compile, once, the kernels the tests and demos use (float32 training, float64 checks),
    so their first use later is not charged to a part's time budget (CuPy caches them on disk)."""
    import numpy

    import nanoae as nn
    from nanoae import backend
    from nanoae.fashion.models import Autoencoder, Classifier
    from nanoae.train.loop import fit

    backend.set_backend("cupy")
    rng = numpy.random.default_rng(0)
    x = rng.integers(0, 256, (64, 784), dtype=numpy.uint8)
    ae = Autoencoder((784, 16, 4), seed=0)
    fit(ae, nn.BinaryCrossEntropy(), nn.Adam(ae.parameters()), x, epochs=1, batch_size=32,
        flip=True, shift=1, mask=0.1, progress=False, verbose=False)
    head = Classifier(4, (8,), 3, seed=0)
    codes = rng.standard_normal((32, 4)).astype(numpy.float32)
    fit(head, nn.CrossEntropy(), nn.AdamW(head.parameters()), codes, numpy.arange(32) % 3,
        epochs=1, batch_size=16, progress=False, verbose=False)
    small = nn.Sequential(nn.Dense(6, 4, dtype=numpy.float64, rng=0), nn.ReLU(),
                          nn.Dense(4, 6, dtype=numpy.float64, rng=1), nn.Sigmoid())
    x64 = backend.to_device(rng.random((3, 6)))
    nn.gradcheck((small, nn.BinaryCrossEntropy()), x64, x64, raise_on_failure=False)  # compiles only


def _nvidia_smi_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "? (no nvidia-smi)"


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"  # 13000 -> "13.0"


def versions() -> int:
    from importlib import metadata

    import cupy
    import numpy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    print(f"GPU 0 of {rt.getDeviceCount()}: {props['name'].decode()} (compute capability "
          f"{props['major']}.{props['minor']}, {props['totalGlobalMem'] / 2**30:.1f} GiB)")
    print(f"driver {_nvidia_smi_driver()}, CUDA driver API {_cuda_version(rt.driverGetVersion())}")
    wheels = sorted(f"{d.metadata['Name']} {d.version}" for d in metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("cupy"))
    local = getattr(cupy.cuda, "get_local_runtime_version", None)  # the installed libcudart
    installed = _cuda_version(local()) if local is not None else "unknown (CuPy too old to say)"
    print(f"CuPy {cupy.__version__} ({', '.join(wheels) or 'wheel unknown'}), "
          f"built for CUDA runtime {_cuda_version(rt.runtimeGetVersion())}, "
          f"installed CUDA runtime {installed}")
    try:
        import torch
        seen = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        print(f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}: {seen}")
    except ImportError as exc:
        print(f"PyTorch: not importable ({exc})")
    print(f"NumPy {numpy.__version__}, Python {platform.python_version()}")
    return 0


class Unreadable(Exception):
    """A results file that is missing or not JSON."""


def _read(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise Unreadable(one_line(f"cannot read {path}: {exc}")) from None


def compare(numpy_path, cupy_path) -> int:
    """Print one line per check; 0 when the CuPy run agrees with the NumPy run."""
    runs = {"numpy": _read(numpy_path), "cupy": _read(cupy_path)}
    failed = []
    for name, metrics in runs.items():
        ran_on = metrics.get("backend")
        if ran_on != name:  # else a "cupy" run that fell back to NumPy would agree trivially
            failed.append("backend")
            print(f"FAILED  backend: {numpy_path if name == 'numpy' else cupy_path} ran on {ran_on!r}, "
                  f"expected {name!r}")
    for key, limit in {**RELATIVE, **POINTS}.items():
        a, b = runs["numpy"].get(key), runs["cupy"].get(key)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            failed.append(key)
            print(f"FAILED  {key}: missing or not a number (numpy {a!r}, cupy {b!r})")
            continue
        if key in RELATIVE:
            gap = abs(b - a) / abs(a) if a else float("inf")
            text = f"numpy {a:.5f}, cupy {b:.5f}: {100 * gap:.2f} % apart (limit {100 * limit:g} %)"
        else:
            gap = abs(b - a)
            text = (f"numpy {100 * a:.2f} %, cupy {100 * b:.2f} %: {100 * gap:.2f} points apart "
                    f"(limit {100 * limit:g})")
        ok = gap <= limit
        failed += [] if ok else [key]
        print(f"{'ok' if ok else 'FAILED':<7} {key}: {text}")
    if failed:
        print(f"the CuPy run disagrees with the NumPy run: {', '.join(dict.fromkeys(failed))}")
        return 1
    print("the CuPy run agrees with the NumPy run")
    return 0


def bench(*paths) -> int:
    """Print nanoae's ratios to PyTorch CUDA and GPU memory; 1 if nanoae did not run somewhere."""
    failed = []
    for path in paths:
        doc = _read(path)
        batch = doc.get("settings", {}).get("batch")
        for workload, rows in doc.get("results", {}).items():
            where = f"{workload}, batch {batch}"
            mine = rows.get("nanoae", {})
            if "median_s" not in mine:
                failed.append(where)
                print(f"FAILED  {where}: nanoae did not run: {mine.get('skipped', 'no result')}")
                continue
            parts = [f"nanoae {mine['median_s']:.4f} s/epoch"]
            for peer in PEERS:
                r = rows.get(peer, {})
                parts.append(f"nanoae/{peer} {mine['median_s'] / r['median_s']:.2f}" if "median_s" in r
                             else f"{peer} skipped ({r.get('skipped', 'not run')})")
            memory = ", ".join(f"{name} {r['gpu_mib']:.0f}" for name, r in rows.items() if "gpu_mib" in r)
            print(f"ok      {where}: {'; '.join(parts)}; GPU MiB: {memory or 'not reported'}")
    if failed:
        print(f"nanoae did not run on: {'; '.join(failed)}")
        return 1
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if name == "probe" and not args:
            return probe()
        if name == "versions" and not args:
            return versions()
        if name == "compare" and len(args) == 2:
            return compare(*args)
        if name == "bench" and args:
            return bench(*args)
    except Unreadable as exc:
        print(exc)
        return 2
    print("usage:\n" + __doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
