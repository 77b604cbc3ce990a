#!/usr/bin/env bash
# The head grid at stride 8 instead of 16 (16x16 cells at 128 px; the finer levels pooled to it,
# the last stage upsampled), for the default and the fast network, and a warm restart of the
# default and the fast model, plain and with in-the-wild augmentation (docs/results.md, runs S8,
# F2S8, VR, F2R, HA), one seed each. V and F2 are the runs of sweeps/faces68_neighbours.sh (the
# shipped models when these ran): pass their best checkpoints. VR and F2R are the shipped models.
#   bash sweeps/faces68_head_grid.sh OUT_DIR V_CKPT F2_CKPT
set -euo pipefail
OUT=$1
V_CKPT=$2
F2_CKPT=$3
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
# S8: the default (V) with a stride-8 head grid: 0.418 GMACs
run S8_head_stride8 +experiment=faces68 model.net.head_stride=8
# VR: V restarted from its best epoch for 60 epochs of cosine decay from a quarter of the learning rate
run VR_restart60 +experiment=faces68 init_from="$V_CKPT" trainer.max_epochs=60 model.optimizer.lr=0.0005
# F2S8: the fast recipe with a stride-8 head grid; no teacher (distillation needs the teacher's head grid)
run F2S8_fast_head_stride8 +experiment=faces68_fast model.net.head_stride=8 model.distill=null
# F2R: F2 restarted the same way; its teacher is the recipe's (smallnet_300w: VR when it ran)
run F2R_fast_restart60 +experiment=faces68_fast init_from="$F2_CKPT" trainer.max_epochs=60 model.optimizer.lr=0.0005
# HA: VR with in-the-wild augmentation during the restart (roll, yaw-like squeeze, low resolution,
# defocus/motion blur, JPEG, lighting)
run HA_restart60_wild_aug +experiment=faces68 init_from="$V_CKPT" trainer.max_epochs=60 model.optimizer.lr=0.0005 \
  data.train_crop.rotation=30 data.train_crop.squeeze=0.2 data.photometric.lowres=0.2 data.photometric.strong_blur=0.1 \
  data.photometric.jpeg=0.2 data.photometric.lighting=0.2
bash "$(dirname "$0")/eval_runs.sh" "$OUT" --decoding
