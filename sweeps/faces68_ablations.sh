#!/usr/bin/env bash
# The data=faces68 ablations (docs/results.md): which extra faces and which augmentation
# help on the unchanged 300-W validation split, one change at a time, one seed each.
# Every run draws 2,000 faces per epoch (weighted by source), so runs take the same steps.
#   bash sweeps/faces68_ablations.sh [OUT_DIR]
# then every last checkpoint is evaluated on the 132-face 300-W split and on the mixed
# validation faces (300-W + LFPW + YouTube Faces, with the hard-face subset).
set -euo pipefail
OUT=${1:-multirun/faces68_ablations}
ROBUST=(data.train_crop.squeeze=0.3 data.train_crop.rotation=30 data.train_crop.shift=0.08
  data.train_crop.scale_jitter=0.15 data.photometric.lighting=0.3 data.photometric.strong_blur=0.2
  data.photometric.lowres=0.3 data.photometric.jpeg=0.3)
FAST=(model.net.width_mult=0.5 trainer.max_epochs=80 data.cache.size=384)
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  echo "== $name: $*"
  python -m smallnet_lit.train +experiment=faces68 trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
# YouTube Faces frames: none, weight 0.1, weight 0.25 (fast model, 80 epochs)
run fast_ytf0 "${FAST[@]}" data.sources.ytf68.weight=0
run fast_ytf0.1 "${FAST[@]}" data.sources.ytf68.weight=0.1
run fast_ytf0.25 "${FAST[@]}" data.sources.ytf68.weight=0.25
# in-the-wild augmentation (squeeze, roll, box noise, lighting, strong blur, low resolution, JPEG)
run fast_ytf0_robust "${FAST[@]}" data.sources.ytf68.weight=0 "${ROBUST[@]}"
# the default width, 90 epochs, without YouTube Faces
run default_ytf0 data.sources.ytf68.weight=0 data.cache.size=384
python -m smallnet_lit.compare "$OUT"
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  for data in ibug300w faces68; do
    eval_dir="${OUT}_eval/${name}_${data}"
    [[ -f "$dir/checkpoints/last.ckpt" && ! -f "$eval_dir/metrics.json" ]] || continue
    python -m smallnet_lit.eval ckpt_path="$dir/checkpoints/last.ckpt" data="$data" split=val hydra.run.dir="$eval_dir"
  done
done
