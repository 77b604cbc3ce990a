#!/usr/bin/env bash
# Neighbouring-cell offsets, depth and the deeper fast model (docs/results.md, runs P-W):
# what the decoding diagnosis (python -m smallnet_lit.tools.decoding) pointed at, one seed each.
#   bash sweeps/faces68_offsets_depth.sh [OUT_DIR] [TEACHER]
# TEACHER: the checkpoint the fast runs distil from (run L: the shipped smallnet_300w before
# this sweep). P, S, R and T were stopped early when they trailed their reference by more
# than the noise (results.md gives the epoch); run them to the end here.
set -euo pipefail
OUT=${1:-multirun/faces68_offsets_depth}
TEACHER=${2:-smallnet_300w}
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  echo "== $name: $*"
  python -m smallnet_lit.train trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
# offsets trained in the ground-truth cell's neighbourhood (default width, 120 epochs)
run P_radius1_uniform +experiment=faces68 model.loss.loc_radius=1 model.loss.loc_weighting=uniform
run S_grid_prob +experiment=faces68 model.loss.loc_radius=7
run R_radius1_prob +experiment=faces68 model.loss.loc_radius=1
run T_fast_radius1_prob +experiment=faces68_fast model.loss.loc_radius=1 model.distill.teacher="$TEACHER"
# depth: 3-3-3-2 convs per stage (1.49 M parameters, 0.33 GMACs), default and fast width
run U_depth3332 +experiment=faces68 "model.net.depths=[3,3,3,2]"
run W_fast_depth3332 +experiment=faces68_fast "model.net.depths=[3,3,3,2]" model.distill.teacher="$TEACHER"
python -m smallnet_lit.tools.compare "$OUT"
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  ckpt=$(ls "$dir"/checkpoints/epoch_*.ckpt 2>/dev/null | tail -1)  # best epoch, as in the table
  [[ -n "$ckpt" ]] || continue
  for setting in "ibug300w" "ibug300w flip_test=true" "faces68"; do
    set -- $setting
    eval_dir="${OUT}_eval/${name}_$(echo "$setting" | tr ' =' '__')"
    [[ -f "$eval_dir/metrics.json" ]] && continue
    python -m smallnet_lit.eval ckpt_path="$ckpt" data="$1" split=val "${@:2}" hydra.run.dir="$eval_dir"
  done
  python -m smallnet_lit.tools.decoding ckpt_path="$ckpt" data=ibug300w split=val hydra.run.dir="${OUT}_eval/${name}_decoding"
done
