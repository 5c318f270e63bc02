# Shared by the fit templates (sourced inside the job, from the submit folder = the repository root).
# Usage inside a template: fit_job EXPERIMENT.yaml [fer-lightning CLI overrides...]
set -euo pipefail

fit_job() {
  local config=${1:-}
  if [ -z "$config" ] || [ ! -f "$config" ]; then
    echo "usage: sbatch <template> experiments/<experiment>.yaml [CLI overrides...] (submit from the repository root); got '${config}'" >&2
    exit 2
  fi
  shift
  local experiment job run_root bin
  experiment=$(basename "$config" .yaml)
  job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID:-}}
  job=${job:-$SLURM_JOB_ID}
  # one folder per job; a requeued job keeps its id, so it finds its own hpc_ckpt_N.ckpt there
  run_root=${RUN_ROOT:-runs/$experiment/slurm-$job}
  bin=${FER_LIGHTNING:-$SLURM_SUBMIT_DIR/.venv/bin/fer-lightning}
  echo "[$(date -Is)] job $job restart ${SLURM_RESTART_COUNT:-0}: ${SLURM_NNODES} node(s) x ${SLURM_NTASKS_PER_NODE} task(s); run folder $run_root"
  # --kill-on-bad-exit: a rank that dies ends every rank at once (no job hanging in a collective);
  # --wait: a rank that exits early without an error ends the others after 2 minutes
  srun --kill-on-bad-exit=1 --wait=120 "$bin" fit --config "$config" \
    --config "$SLURM_SUBMIT_DIR/experiments/presets/ddp.yaml" \
    --trainer.devices="$SLURM_NTASKS_PER_NODE" --trainer.num_nodes="$SLURM_NNODES" \
    --run_root="$run_root" "$@"
}

not_in_slurm() {
  echo "$1 is an sbatch script and must run inside a SLURM job, one task per device started by srun." >&2
  echo "Submit it from the repository root:" >&2
  echo "    sbatch $1 experiments/pretrain.yaml [--trainer.max_epochs=...]" >&2
  echo "    make slurm-submit CONFIG=experiments/pretrain.yaml   (TEMPLATE=$1 SBATCH='--nodes=2' ARGS=...)" >&2
  echo "Without SLURM, run the same experiment on this machine's GPUs with:" >&2
  echo "    fer-lightning fit --config experiments/pretrain.yaml --config experiments/presets/ddp.yaml" >&2
  exit 2
}
