#!/usr/bin/env bash
# The GPU checks of the repository, unattended, in at most 8 minutes on one CUDA GPU.
#
#   bash benchmarks/gpu.sh            # from the repository root, with the environment active
#
# Steps (each under its own `timeout`; a failed or timed-out step is recorded and the next runs):
#   1. tests      the tests with a CUDA case (parametrised over conftest.DEVICES: `pytest -k cuda`)
#   2. mhe        full-batch Gaussian mhe value + gradient at N = 10^5, d = 128 (bench_pairwise.py)
#   3. knn        metrics.knn / min_angle and the bare-product limit at N = 10^6, d = 128, and knn's
#                 exactness on near-duplicate clusters (bench_knn.py --device cuda)
#   4. sliced     sliced value + gradient at N = 10^6, d = 128 (bench_pairwise.py)
#   5. optimizer  the optimiser step, fused vs torch vs geoopt (bench_speed.py --parts optimizer)
#   6. workflow   every experiment of config/test.yaml (a few steps each) on CUDA with autocast on
#                 (device: cuda, every `amp` key true, no paper), into its own output root
# Writes under benchmarks/results/gpu/: the tables and JSON of each benchmark, <step>.log per
# step, and summary.log (one line per step: status, seconds, log). Exits 0 when every step
# passed, 1 when one failed, 2 at once (before anything runs) when no CUDA device is present.
set -u
cd "$(dirname "$0")/.."
OUT=benchmarks/results/gpu
PY=${PYTHON:-python}

if ! "$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"benchmarks/gpu.sh: no CUDA device is available (torch {torch.__version__}, built for CUDA "
             f"{torch.version.cuda}, {torch.cuda.device_count()} devices visible): run it on a machine with a "
             "CUDA GPU; nothing was run")
print(f"benchmarks/gpu.sh: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
then
    exit 2
fi

mkdir -p "$OUT"
SUMMARY="$OUT/summary.log"
echo "gpu.sh $(date -u '+%Y-%m-%d %H:%M UTC') $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(hostname)" > "$SUMMARY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$SUMMARY" 2>/dev/null || true
FAILED=0
THREADS=$(nproc)

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (at most ${limit} s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local status=passed
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out"; FAILED=1
    elif [ $rc -ne 0 ]; then status="failed (exit $rc)"; FAILED=1; fi
    printf '%-10s %-18s %4d s  %s\n' "$name" "$status" $((SECONDS - t0)) "$OUT/$name.log" | tee -a "$SUMMARY"
}

step tests 90 "$PY" -m pytest -q -x -k cuda tests -m "not workflow and not integration" -p no:cacheprovider
step mhe 60 "$PY" benchmarks/bench_pairwise.py --device cuda --methods mhe_gaussian --impls ours dense \
    --n 1e5 --d 128 --out "$OUT"
step knn 100 "$PY" benchmarks/bench_knn.py --device cuda --n 1e6 --impls knn min_angle limit --rounds 1 \
    --threads "$THREADS" --exact-n 1e4 --out "$OUT"
step sliced 45 "$PY" benchmarks/bench_pairwise.py --device cuda --methods sliced --impls ours reference \
    --n 1e6 --d 128 --out "$OUT"
step optimizer 45 "$PY" benchmarks/bench_speed.py --device cuda --parts optimizer --threads "$THREADS" --out "$OUT"

# the experiments: config/test.yaml on CUDA with autocast on, in an output root of its own
WF="$OUT/workflow"
mkdir -p "$WF"
"$PY" - "$WF/config.yaml" <<'EOF'
import sys
import yaml

cfg = yaml.safe_load(open("config/test.yaml"))
out = sys.argv[1].rsplit("/", 1)[0]


def amp_on(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "amp":
                node[key] = True
            else:
                amp_on(value)
    elif isinstance(node, list):
        for value in node:
            amp_on(value)


amp_on(cfg)
cfg.update(device="cuda", results_dir=f"{out}/results", figures_dir=f"{out}/figures")
cfg["experiments"] = [e for e in cfg.get("experiments", []) if e != "paper"]
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
EOF
step workflow 130 "$PY" -m snakemake --configfile "$WF/config.yaml" --cores "$THREADS" --resources gpu=1 \
    --keep-going --rerun-incomplete

echo "summary: $SUMMARY"
cat "$SUMMARY"
exit $FAILED
