#!/usr/bin/env bash
# The first GPU run, in one command (issue 23, item 5): on a machine where torch sees a CUDA device,
#   1. the GPU tests (tests/models/test_gpu.py, marker gpu),
#   2. the GPU columns of benchmarks/bench_apply_model.py (cnn case): apply_model on CPU and GPU (ratio
#      GPU / CPU), apply_model against a plain torch loop on the GPU, and the GPU's busy share of the wall
#      time with the next batch prefetched to the device and without,
#   3. the land-cover demo on the GPU (benchmarks/demo_landcover.py --quick --device cuda),
# each under its own time limit and all under GPU_CHECK_LIMIT seconds (480: 8 minutes), then one table.
# Without a CUDA device visible to torch it says so and exits 0 (nothing to check).
#
# Usage: bash scripts/gpu-check.sh            (from anywhere; runs in the repository root)
# Settings (environment): PY (the Python with torch and eocube's dependencies; default .venv/bin/python,
#   else python3), GPU_CHECK_OUT (logs and the table; default /tmp/eocube-gpu-check), GPU_CHECK_LIMIT (480),
#   BENCH_ARGS (default "--cases cnn --size 1024 --dates 16 --repeats 3"), DEMO_ARGS (extra demo options,
#   e.g. "--polygons FILE" where ../shared/data is not beside the repository), GPU_CHECK_FORCE=1 (run the
#   steps without CUDA, on the CPU: checks this script itself; the GPU rows then say n/a).
# Exit status: 0 when every step passed (or there is no CUDA), 1 when a step failed or ran out of time.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUTDIR="${GPU_CHECK_OUT:-/tmp/eocube-gpu-check}"
LIMIT="${GPU_CHECK_LIMIT:-480}"
BENCH_ARGS="${BENCH_ARGS:---cases cnn --size 1024 --dates 16 --repeats 3}"
DEMO_ARGS="${DEMO_ARGS:-}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

probe="$("$PY" - <<'EOF' 2>&1
import torch
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "-"
print(f"{int(cuda)}|{torch.__version__}|{torch.version.cuda or 'none'}|{name}")
EOF
)"
if [ $? -ne 0 ]; then
    echo "gpu-check: $PY cannot import torch (${probe##*$'\n'}); set PY to the Python that has torch and eocube's dependencies"
    exit 1
fi
IFS='|' read -r has_cuda torch_version torch_cuda gpu_name <<<"${probe##*$'\n'}"
if [ "$has_cuda" != "1" ] && [ "${GPU_CHECK_FORCE:-0}" != "1" ]; then
    seen="no NVIDIA GPU"
    if command -v nvidia-smi >/dev/null 2>&1 && gpus="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)" && [ -n "$gpus" ]; then
        seen="nvidia-smi sees ${gpus//$'\n'/, }"
    fi
    echo "gpu-check: no CUDA device visible to torch $torch_version (CUDA build: $torch_cuda; $seen): nothing to check."
    if [ "$torch_cuda" = "none" ] && [ "$seen" != "no NVIDIA GPU" ]; then
        echo "gpu-check: this torch is a CPU build: install a CUDA build of torch for $PY (PyPI's Linux wheels are) and rerun."
    fi
    exit 0
fi

rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
DEVICE=cuda; [ "$has_cuda" = "1" ] || DEVICE=cpu
START=$SECONDS
status=0

# step NAME CAP COMMAND...: runs COMMAND with its output in $OUTDIR/NAME.log, killed after min(CAP, time left)
step() {
    local name=$1 cap=$2; shift 2
    local left=$(( LIMIT - (SECONDS - START) - 15 ))  # 15 s kept for the table
    (( left < cap )) && cap=$left
    if (( cap < 10 )); then
        echo "skipped: no time left" >"$OUTDIR/$name.log"; echo "-1 0" >"$OUTDIR/$name.rc"; status=1; return
    fi
    echo "gpu-check: $name (at most ${cap} s) ..."
    local t0=$SECONDS
    timeout --kill-after=10 "$cap" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    echo "$rc $(( SECONDS - t0 ))" >"$OUTDIR/$name.rc"
    (( rc != 0 )) && status=1
    return 0
}

step tests 120 "$PY" -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" -m gpu -rs \
    --basetemp="$OUTDIR/pytest" --junitxml="$OUTDIR/tests.xml" tests/models/test_gpu.py
# shellcheck disable=SC2086  # the arguments are meant to be split
step bench 180 "$PY" benchmarks/bench_apply_model.py $BENCH_ARGS
# shellcheck disable=SC2086
step demo 240 "$PY" benchmarks/demo_landcover.py --quick --device "$DEVICE" --out "$OUTDIR/demo" $DEMO_ARGS

GPU_NAME="$gpu_name" TORCH="$torch_version+cuda$torch_cuda" TOTAL=$(( SECONDS - START )) \
"$PY" - "$OUTDIR" "$LIMIT" "$DEVICE" <<'EOF' | tee "$OUTDIR/table.md"
import json, os, re, sys
import xml.etree.ElementTree as ET

out, limit, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def read(name):
    try:
        return open(os.path.join(out, name)).read()
    except OSError:
        return ""

def ran(name):
    """(exit code, seconds) of a step; exit code 124/137: killed at its time limit."""
    parts = read(f"{name}.rc").split()
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (-1, 0)

def how(name):
    rc, secs = ran(name)
    return {0: "ok", -1: "not run", 124: "TIME LIMIT", 137: "TIME LIMIT"}.get(rc, f"FAILED (exit {rc})") + f", {secs} s"

rows = [("device", f"{os.environ['GPU_NAME']}, torch {os.environ['TORCH']}" if device == "cuda" else "CPU (GPU_CHECK_FORCE=1)")]
try:
    suite = ET.parse(os.path.join(out, "tests.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    tests = f"{n - f - e - s} passed, {f + e} failed, {s} skipped"
except (OSError, ET.ParseError, AttributeError):
    tests = "no result"
rows.append(("GPU tests (tests/models/test_gpu.py -m gpu)", f"{tests} ({how('tests')})"))

bench = read("bench.log")
def num(pattern):
    m = re.search(pattern, bench)
    return float(m.group(1)) if m else None
cpu = num(r"\[cpu\] eocube\.apply_model:\s+([\d.]+) Mpx/s")
gpu = num(r"\[cuda\] eocube\.apply_model:\s+([\d.]+) Mpx/s")
loop = num(r"\[cuda\] ratio apply_model / plain loop = ([\d.]+)")
on = num(r"prefetch=True\s*:\s*([\d.]+)")
off = num(r"prefetch=False\s*:\s*([\d.]+)")
fmt = lambda v, spec, unit="": "n/a" if v is None else f"{v:{spec}}{unit}"
m = re.search(r"^cube .*$", bench, re.M)
rows += [
    ("bench_apply_model (cnn case)", f"{m.group(0) if m else 'no output'} ({how('bench')})"),
    ("apply_model on CPU / on GPU", f"{fmt(cpu, '.2f', ' Mpx/s')} / {fmt(gpu, '.2f', ' Mpx/s')}"),
    ("GPU / CPU (apply_model)", "n/a" if not (cpu and gpu) else f"{gpu / cpu:.1f}x"),
    ("apply_model / plain torch loop, on GPU", fmt(loop, ".3f")),
    ("GPU busy / wall, prefetch on / off", f"{fmt(on, '.3f')} / {fmt(off, '.3f')}"),
]
try:
    sc = json.loads(read("demo/scores.json"))
    demo = (f"macro-F1 network {sc['network']['macro_f1']:.3f} vs random forest {sc['random_forest']['macro_f1']:.3f}; "
            f"training {sc['train_seconds']:.0f} s, class map {sc.get('map_seconds', float('nan')):.0f} s, "
            f"total {sc['total_seconds']:.0f} s")
except (ValueError, KeyError, TypeError):
    demo = "no scores"
rows.append((f"land-cover demo --quick on {device}", f"{demo} ({how('demo')})"))
rows.append(("total", f"{os.environ['TOTAL']} s (limit {limit} s); logs in {out}"))

width = max(len(a) for a, _ in rows)
print(f"\n| {'check'.ljust(width)} | result |\n|{'-' * (width + 2)}|--------|")
for a, b in rows:
    print(f"| {a.ljust(width)} | {b} |")
EOF
exit $status
