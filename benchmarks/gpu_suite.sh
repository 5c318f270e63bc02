#!/usr/bin/env bash
# The GPU checks in one device call (about 9 minutes on one H100/H200 with 16 cores):
# first a short real fit of the synthetic fine-tuning experiment with presets/gpu_bf16.yaml, its
# validation and the final validate/test table included (the CCC metric, trace plots and device
# augmentation on CUDA); then benchmarks/train_throughput.py with ResNet-50 + 2x256 BiLSTM, bf16 autocast, channels_last, at
#   112 px: 16 clips x 32 frames (the probes' batch), loader vs device augmentation, 2/4/8 workers
#           loader-only, 4/8/12 workers end to end, channels_last / compile / fp32 before-after;
#   224 px:  8 clips x 32 frames, device augmentation, 8/12 workers end to end.
# JSON lines go to $OUT (the device tool's result folder) or runs/bench/.
#
#   here:   bash benchmarks/gpu_wheels.sh     # once: the wheels the GPU image lacks, into .whl/
#   there:  bash benchmarks/gpu_suite.sh      # device run with carry [".whl"], timeout_s 600
# SUITE_ARGS is appended to every run (a CPU dry run of the script: SUITE_ARGS="--device cpu
# --backbone test_resnet --hidden-size 8 --num-layers 1 --videos 4 --seconds 4 --steps 1 --warmup 1
# --loader-batches 2 --precision 32-true").
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") | tee "$out/gpu.txt"
nproc | tee -a "$out/gpu.txt"
# the fine-tuning experiment on the GPU, to its table (fit log: $out/gpu_fit.log)
timeout 120 "$py" -m fer_lightning.cli synth --out /tmp/gpu_synth --videos 12 --seconds 10 --skip_existing true \
  > "$out/gpu_fit.log" 2>&1
timeout 150 "$py" -m fer_lightning.cli fit --config experiments/finetune_synthetic.yaml \
  --config experiments/presets/gpu_bf16.yaml --data.root=/tmp/gpu_synth --run_root=/tmp/gpu_fit \
  --trainer.max_epochs=2 --trainer.enable_progress_bar=false >> "$out/gpu_fit.log" 2>&1
echo "{\"gpu_fit_exit_code\": $?}" | tee -a "$out/train_throughput_gpu.jsonl"
tail -n 12 "$out/gpu_fit.log"
common=(--device cuda --backbone resnet50 --hidden-size 256 --num-layers 2 --precision bf16-mixed
        --videos 48 --seconds 20 --steps 40 --warmup 10 --loader-batches 100)
timeout 300 "$py" benchmarks/train_throughput.py "${common[@]}" --image-size 112 --batch-size 16 --clip-len 32 \
  --workers 2 4 8 --pipeline-workers 4 8 12 --ablate channels_last compile precision ${SUITE_ARGS:-} \
  2> >(tee "$out/gpu_112.err" >&2) | tee -a "$out/train_throughput_gpu.jsonl"
timeout 180 "$py" benchmarks/train_throughput.py "${common[@]}" --image-size 224 --batch-size 8 --clip-len 32 \
  --workers 4 --pipeline-workers 8 12 --augment-on device --skip-raw-store ${SUITE_ARGS:-} --ablate \
  2> >(tee "$out/gpu_224.err" >&2) | tee -a "$out/train_throughput_gpu.jsonl"
