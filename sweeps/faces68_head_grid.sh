#!/usr/bin/env bash
# The head grid at stride 8 instead of 16 (16x16 cells at 128 px; the finer levels pooled to it,
# the last stage upsampled), for the default and the fast network, and a warm restart of the
# default (docs/results.md, runs S8, F2S8, VR), one seed each. V is the default's run of
# sweeps/faces68_neighbours.sh (the shipped smallnet_300w when these ran): pass its checkpoint.
#   bash sweeps/faces68_head_grid.sh OUT_DIR V_CKPT
set -euo pipefail
OUT=$1
V_CKPT=$2
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  echo "== $name: $*"
  python -m smallnet_lit.train trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
# S8: the default (V) with a stride-8 head grid: 0.418 GMACs
run S8_head_stride8 +experiment=faces68 model.net.head_stride=8
# VR: V restarted from its best epoch for 60 epochs of cosine decay from a quarter of the learning rate
run VR_restart60 +experiment=faces68 init_from="$V_CKPT" trainer.max_epochs=60 model.optimizer.lr=0.0005
# F2S8: the fast recipe with a stride-8 head grid; no teacher (distillation needs the teacher's head grid)
run F2S8_fast_head_stride8 +experiment=faces68_fast model.net.head_stride=8 model.distill=null
bash "$(dirname "$0")/eval_runs.sh" "$OUT" --decoding
