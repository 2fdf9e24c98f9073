#!/usr/bin/env bash
# Train one dataset on several nodes under SLURM: one torchrun per node, which starts one
# training process per GPU of its node. Submit it from the repository folder:
#   sbatch scripts/slurm-train.sh DATASET [more `salgl train` options]
# Every node must see the repository folder at the same path (shared storage): each node
# reads the prepared data, the label vectors and params.yaml there, and the resume state in
# state/DATASET that rank 0 writes. Rank 0 alone writes the model file, the curves and that
# state. A lost node ends the others within SALGL_DIST_TIMEOUT seconds (default 600);
# submitting the job again resumes from the last saved epoch (README, "Several GPUs and
# nodes"). Set the #SBATCH lines to your cluster (nodes, GPUs, time; a partition or account
# where it needs one).
#SBATCH --job-name=salgl-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=salgl-train-%j.log
set -euo pipefail

dataset=${1:?usage: sbatch scripts/slurm-train.sh DATASET [salgl train options]}
shift
cd "${SLURM_SUBMIT_DIR:?submit this script with sbatch}"
# shellcheck disable=SC1091
[ ! -f .venv/bin/activate ] || source .venv/bin/activate  # or your own environment

# The job's first node hosts the rendezvous; every torchrun meets there on this port.
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${SALGL_RDZV_PORT:-29500}
# Processes per node: the GPUs SLURM gave this node (SALGL_NPROC_PER_NODE overrides it).
gpus=${SALGL_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}

# srun starts this line once per node (--ntasks-per-node=1). The rendezvous numbers the
# nodes, so no node rank is given; the job id keeps two jobs on one host apart.
srun --ntasks-per-node=1 \
    torchrun --nnodes "$SLURM_NNODES" --nproc-per-node "$gpus" \
    --rdzv-backend c10d --rdzv-endpoint "$head_node:$port" --rdzv-id "$SLURM_JOB_ID" \
    -m salgl.cli train "$dataset" "$@"
