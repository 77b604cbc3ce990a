#!/usr/bin/env bash
# Evaluate every run of a sweep folder as docs/results.md's tables do: the best-epoch
# checkpoint on the 300-W split (plain and with the flip test) and on the validation faces of
# every source (data=faces68), into OUT_eval/<run>_<setting>; with --decoding also the
# decoding diagnosis (python -m smallnet_lit.tools.decoding). Evaluations already written are kept.
#   bash sweeps/eval_runs.sh OUT [--decoding]
set -euo pipefail
OUT=$1
DECODING=${2:-}
python -m smallnet_lit.tools.compare "$OUT"
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  ckpt=$(ls "$dir"/checkpoints/epoch_*.ckpt 2>/dev/null | tail -1) # the table's checkpoints: best epoch
  [[ -n "$ckpt" ]] || continue
  for setting in "ibug300w" "ibug300w flip_test=true" "faces68"; do
    set -- $setting
    eval_dir="${OUT}_eval/${name}_$(echo "$setting" | tr ' =' '__')"
    [[ -f "$eval_dir/metrics.json" ]] && continue
    python -m smallnet_lit.eval ckpt_path="$ckpt" data="$1" split=val "${@:2}" hydra.run.dir="$eval_dir"
  done
  if [[ "$DECODING" == --decoding ]]; then
    python -m smallnet_lit.tools.decoding ckpt_path="$ckpt" data=ibug300w split=val hydra.run.dir="${OUT}_eval/${name}_decoding"
  fi
done
