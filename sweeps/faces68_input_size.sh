#!/usr/bin/env bash
# Input size of the shipped default recipe (docs/results.md, "input size"): the same network
# at 128, 160 and 192 px (head grid 8x8, 10x10, 12x12 at stride 16; 0.18 / 0.28 / 0.41 GMACs,
# all within the 0.5 GMAC budget), one seed each, then every run's best and final checkpoint
# on the 300-W split and on the validation faces of every source.
#   bash sweeps/faces68_input_size.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-multirun/faces68_input_size}
for size in 128 160 192; do
  run="$OUT/input_$size"
  [[ -f "$run/checkpoints/last.ckpt" ]] && { echo "skip $run (done)"; continue; }
  # as runs G, I, J ran (before EMA, 120 epochs and the deeper network became the recipe's defaults)
  python -m smallnet_lit.train +experiment=archive/faces68_g model.net.input_size="$size" \
    trainer.enable_progress_bar=false hydra.run.dir="$run"
done
python -m smallnet_lit.tools.compare "$OUT"
for run in "$OUT"/input_*/; do
  best=$(ls "$run"checkpoints/epoch_*.ckpt | tail -1)
  for data in ibug300w faces68; do
    python -m smallnet_lit.eval ckpt_path="$best" data="$data" split=val \
      hydra.run.dir="${OUT}_eval/$(basename "$run")_$data" > /dev/null
  done
done
grep -H '"val/\(ibug300w/\)\?nme"' "${OUT}_eval"/*/metrics.json
