#!/usr/bin/env bash
# gpu_check.sh: prove nanoae on an NVIDIA GPU in at most 8 minutes, offline, from a checkout.
# Run without arguments for the usage text. The parts that need Python are in gpu_check.py.
set -u
set -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$REPO/benchmarks/gpu_check.py"
PYTHON=${PYTHON:-python3}
# 8 minutes from the start, less 20 s for the summary and for the grace after each signal:
# every part's timeout ends by then. The parts' caps add up inside it: probe 90, versions 20,
# tests/demos 190 (+15 grace), compare 15, bench-256 75, bench-4096 45, bench-check 10 = 460.
BUDGET_S=460
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

usage() {
    cat <<EOF
usage: NANOAE_DATA_DIR=DIR benchmarks/gpu_check.sh OUT_DIR

Proves nanoae on an NVIDIA GPU in at most 8 minutes, without network: it runs from
this checkout (PYTHONPATH=$REPO; nothing is installed or downloaded) and needs
CuPy, PyTorch with CUDA, NumPy, scikit-learn, matplotlib, tqdm and pytest. Set
PYTHON to use another interpreter than python3.

The data: the four Fashion-MNIST files, .gz or not, in the directory NANOAE_DATA_DIR.
Prepare it once where the files are, inside the checkout (.gitignore lists .data/):
    mkdir -p .data/fashion-mnist
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .data/fashion-mnist/   # Debian: dataset-fashion-mnist
    # or from the cache of a nanoae run that downloaded them: ~/.cache/nanoae/fashion-mnist/
then copy the checkout with .data/ to the GPU machine and run, from the checkout:
    NANOAE_DATA_DIR=.data/fashion-mnist benchmarks/gpu_check.sh gpu-check

Parts, each under its own timeout, written into OUT_DIR (a summary goes to stdout):
  versions    GPU, driver, CUDA, CuPy, PyTorch, NumPy            versions.txt
  tests       pytest -m gpu: the CuPy run of every test that
              takes the backend as a parameter                   tests.log, tests.xml
  demo-numpy  nanoae demo --quick --backend numpy                demo-numpy/, demo-numpy.log
  demo-cupy   the same on cupy (these three run at once)         demo-cupy/, demo-cupy.log
  compare     the demos agree: autoencoder test BCE within 1 %
              (relative), test accuracies within 1 point         compare.txt
  bench-256   bench.py --device cuda --batch 256 (and 4096):     bench-256.log, bench-256.json
  bench-4096  nanoae on CuPy against PyTorch CUDA eager and tuned,
              autoencoder and head, with GPU memory
  bench-check nanoae ran on every workload; its ratios           bench-check.txt

Exit status: 0 every part passed; 1 some part failed (the last line names them);
2 bad usage, no usable GPU (one line), or no data.
EOF
}

die_usage() {
    echo "gpu_check: error: $1" >&2
    echo >&2
    usage >&2
    exit 2
}

if [ $# -ne 1 ] || [ -z "$1" ]; then die_usage "give exactly one argument, the output directory"; fi
case $1 in -h | --help) usage; exit 0 ;; esac

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
unset NANOAE_BACKEND

# No GPU: one line, exit 2, before anything is written.
# The probe also compiles a kernel, calls cuBLAS, and warms CuPy's kernel cache (one tiny
# training run in float32, one gradient check in float64), so the tests below do not spend
# their budget compiling.
probe=$(timeout -k 5 90 "$PYTHON" "$HELPER" probe 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && probe="the probe ($PYTHON $HELPER probe) took more than 90 s"
    [ $rc -eq 127 ] && probe="$PYTHON not found"
    echo "gpu_check: no usable GPU: $(printf '%s' "$probe" | tr -s '\n' ' ' | cut -c1-500)" >&2
    exit 2
fi

[ -n "${NANOAE_DATA_DIR:-}" ] || die_usage "NANOAE_DATA_DIR is not set"
[ -d "$NANOAE_DATA_DIR" ] || die_usage "NANOAE_DATA_DIR=$NANOAE_DATA_DIR is not a directory"
DATA=$(cd "$NANOAE_DATA_DIR" && pwd)
for f in $FILES; do
    [ -f "$DATA/$f.gz" ] || [ -f "$DATA/$f" ] || die_usage "$DATA has no $f(.gz)"
done
export NANOAE_DATA_DIR="$DATA"

mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
STATUS="$OUT/status"  # one file per part: "<status>|<seconds>", written by run_part
# nothing stale from an earlier run into the same directory may pass for this run's
rm -rf "$STATUS" "$OUT"/{versions.txt,tests.log,tests.xml,compare.txt,bench-check.txt,summary.txt,summary.json} \
    "$OUT"/demo-*.log "$OUT"/bench-*.log "$OUT"/bench-*.json && mkdir -p "$STATUS"
export MPLCONFIGDIR="$OUT/matplotlib"
DEADLINE=$BUDGET_S  # bash's SECONDS counts from the start of the script
PARTS=()
trap 'echo "gpu_check: interrupted" >&2; kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# run_part NAME CAP LOG CMD...: run CMD from the checkout, stdout and stderr into LOG, killed
# after CAP seconds or when the 8-minute budget runs out, whichever comes first. It records
# "ok", "FAILED (exit N)" or "TIMEOUT" in $STATUS/NAME; it may run in the background.
run_part() {
    local name=$1 cap=$2 log=$3 start=$SECONDS left rc state
    shift 3
    left=$((DEADLINE - SECONDS))
    if [ $left -lt 20 ]; then
        echo "NOT RUN (the 8-minute budget was spent)|0" >"$STATUS/$name"
        return 1
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    # SIGINT first: pytest then stops, prints its summary and writes its junit file; a part
    # that ignores it is killed 15 s later
    (cd "$REPO" && timeout -s INT -k 15 "$cap" "$@") >"$log" 2>&1
    rc=$?
    case $rc in
        0) state=ok ;;
        124 | 137 | 130 | 2) [ $((SECONDS - start)) -ge "$cap" ] && state="TIMEOUT (after $cap s)" || state="FAILED (exit $rc)" ;;
        *) state="FAILED (exit $rc)" ;;
    esac
    echo "$state|$((SECONDS - start))" >"$STATUS/$name"
    return $rc
}

status_of() { cut -d'|' -f1 "$STATUS/$1" 2>/dev/null || echo "NOT RUN"; }
seconds_of() { cut -d'|' -f2 "$STATUS/$1" 2>/dev/null || echo 0; }

echo "gpu_check: $REPO -> $OUT (data: $DATA)"

PARTS+=(versions)
run_part versions 20 "$OUT/versions.txt" "$PYTHON" "$HELPER" versions
sed 's/^/  /' "$OUT/versions.txt"

# Correctness first, three parts at once: they share the GPU but time nothing.
echo "running tests, demo-numpy and demo-cupy at once (up to 190 s) ..."
PARTS+=(tests demo-numpy demo-cupy)
run_part tests 190 "$OUT/tests.log" env -u NANOAE_DATA_DIR "$PYTHON" -m pytest -m gpu -q \
    -p no:cacheprovider --junitxml="$OUT/tests.xml" &
for b in numpy cupy; do
    run_part "demo-$b" 190 "$OUT/demo-$b.log" "$PYTHON" -m nanoae.cli demo --quick --backend "$b" \
        --data-dir "$DATA" --no-progress --out "$OUT/demo-$b" &
done
wait

PARTS+=(compare)
if [ "$(status_of demo-numpy)" = ok ] && [ "$(status_of demo-cupy)" = ok ]; then
    run_part compare 15 "$OUT/compare.txt" "$PYTHON" "$HELPER" compare \
        "$OUT/demo-numpy/metrics.json" "$OUT/demo-cupy/metrics.json"
else
    echo "NOT RUN (needs both demos)|0" >"$STATUS/compare"
fi

# Timings last and alone on the machine: batch:timeout in seconds.
jsons=()
for spec in 256:75 4096:45; do
    batch=${spec%%:*}
    PARTS+=("bench-$batch")
    echo "running bench-$batch (up to ${spec#*:} s) ..."
    run_part "bench-$batch" "${spec#*:}" "$OUT/bench-$batch.log" "$PYTHON" benchmarks/bench.py \
        --device cuda --batch "$batch" --repeats 1 --epochs-per-run 3 --json "$OUT/bench-$batch.json" \
        --only nanoae,nanoae-raw,torch-plain,torch-tuned,floor
    [ -f "$OUT/bench-$batch.json" ] && jsons+=("$OUT/bench-$batch.json")
done
PARTS+=(bench-check)
if [ ${#jsons[@]} -gt 0 ]; then
    run_part bench-check 10 "$OUT/bench-check.txt" "$PYTHON" "$HELPER" bench "${jsons[@]}"
else
    echo "NOT RUN (no benchmark JSON)|0" >"$STATUS/bench-check"
fi

# ------------------------------------------------------------------------------ summary
failed=()
parts_json=""
failed_json=""
for p in "${PARTS[@]}"; do
    if [ "$(status_of "$p")" != ok ]; then
        failed+=("$p")
        failed_json="$failed_json${failed_json:+, }\"$p\""
    fi
    parts_json="$parts_json${parts_json:+, }\"$p\": {\"status\": \"$(status_of "$p")\", \"seconds\": $(seconds_of "$p")}"
done
echo "{\"parts\": {$parts_json}, \"failed\": [$failed_json], \"seconds\": $SECONDS}" >"$OUT/summary.json"

{
    echo
    echo "== gpu_check summary: $OUT =="
    echo "versions:"
    sed 's/^/  /' "$OUT/versions.txt"
    echo "tests (pytest -m gpu): $(grep -E '(passed|failed|error|no tests ran)' "$OUT/tests.log" 2>/dev/null | tail -n 1)"
    [ "$(status_of tests)" = ok ] || { echo "  $(status_of tests); the last lines of tests.log:"; tail -n 5 "$OUT/tests.log" 2>/dev/null | sed 's/^/    /'; }
    grep -E '^SKIPPED' "$OUT/tests.log" 2>/dev/null | sed 's/^/  /' | head -n 20
    grep -E '^(FAILED|ERROR)' "$OUT/tests.log" 2>/dev/null | sed 's/^/  /' | head -n 40
    for b in numpy cupy; do
        [ "$(status_of "demo-$b")" = ok ] || { echo "demo-$b, last lines:"; tail -n 15 "$OUT/demo-$b.log" | sed 's/^/  /'; }
    done
    if [ -f "$OUT/compare.txt" ]; then
        echo "demo --quick, cupy against numpy:"
        sed 's/^/  /' "$OUT/compare.txt"
    fi
    for batch in 256 4096; do
        [ -f "$OUT/bench-$batch.log" ] || continue
        echo "bench.py --device cuda --batch $batch (progress lines left out; all in bench-$batch.log):"
        grep -v '^\[' "$OUT/bench-$batch.log" | sed 's/^/  /'
    done
    if [ -f "$OUT/bench-check.txt" ]; then
        echo "nanoae on CuPy against PyTorch CUDA (target: nanoae/torch-plain <= 1.0 on the autoencoder):"
        sed 's/^/  /' "$OUT/bench-check.txt"
    fi
    echo
    printf '%-12s %-36s %s\n' part status seconds
    for p in "${PARTS[@]}"; do
        printf '%-12s %-36s %s\n' "$p" "$(status_of "$p")" "$(seconds_of "$p")"
    done
    echo "total $SECONDS s; everything is in $OUT (summary.txt, summary.json)"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "gpu_check: FAILED parts: ${failed[*]}"
    else
        echo "gpu_check: all parts passed"
    fi
} | tee "$OUT/summary.txt"
[ ${#failed[@]} -eq 0 ]
