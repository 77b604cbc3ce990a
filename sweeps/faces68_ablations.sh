#!/usr/bin/env bash
# The data=faces68 ablations (docs/results.md): which extra faces and which augmentation
# help on the unchanged 300-W validation split, one change at a time, one seed each.
# Every run draws 2,000 faces per epoch (weighted by source), so runs take the same steps.
#   bash sweeps/faces68_ablations.sh [OUT_DIR]
# then every run's best-epoch checkpoint is evaluated (sweeps/eval_runs.sh) on the 132-face 300-W split and on the mixed
# validation faces (300-W + LFPW + YouTube Faces, with the hard-face subset).
set -euo pipefail
OUT=${1:-multirun/faces68_ablations}
ROBUST=(data.train_crop.squeeze=0.3 data.train_crop.rotation=30 data.train_crop.shift=0.08
  data.train_crop.scale_jitter=0.15 data.photometric.lighting=0.3 data.photometric.strong_blur=0.2
  data.photometric.lowres=0.3 data.photometric.jpeg=0.3)
# A-E ran before NHWC and the 256-px crop cache became the faces68 defaults.
# A-J ran before EMA and 120 epochs became the faces68 default, the fast ones at half width.
OLD=(trainer.max_epochs=90 callbacks.ema=null)
BEFORE=(model.channels_last=false data.cache.size=384 "${OLD[@]}")
FAST=(model.net.width_mult=0.5 "${BEFORE[@]}" trainer.max_epochs=80)
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  local experiment=faces68
  if [[ ${1:-} == +experiment=* ]]; then experiment=${1#+experiment=}; shift; fi
  echo "== $name: $*"
  # every run here predates the deeper networks of the recipes (runs U, V: faces68_offsets_depth.sh,
  # faces68_neighbours.sh) and the fast recipe's 120 epochs (run Z)
  local epochs=()
  [[ $experiment == faces68_fast ]] && epochs=(trainer.max_epochs=80)
  python -m smallnet_lit.train +experiment="$experiment" "model.net.widths=[32,64,128,256]" "model.net.depths=[1,2,2,2]" \
    "${epochs[@]}" trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
# YouTube Faces frames: none, weight 0.1, weight 0.25 (fast model, 80 epochs)
run fast_ytf0 "${FAST[@]}" data.sources.ytf68.weight=0
run fast_ytf0.1 "${FAST[@]}" data.sources.ytf68.weight=0.1
run fast_ytf0.25 "${FAST[@]}" data.sources.ytf68.weight=0.25
# in-the-wild augmentation (squeeze, roll, box noise, lighting, strong blur, low resolution, JPEG)
run fast_ytf0_robust "${FAST[@]}" data.sources.ytf68.weight=0 "${ROBUST[@]}"
# the default width, 90 epochs: without YouTube Faces (A), and as shipped (G: weight 0.1)
run default_ytf0 data.sources.ytf68.weight=0 "${BEFORE[@]}"
run default_ytf0.1 "${OLD[@]}"
# the fast model (half width then) distilled from A's best epoch (F)
teacher=$(ls "$OUT"/default_ytf0/checkpoints/epoch_*.ckpt | tail -1)
run fast_ytf0_distilled +experiment=faces68_fast model.distill.teacher="$teacher" model.net.width_mult=0.5 callbacks.ema=null
# the recipes shipped now: G + EMA, 120 epochs (L); width 0.75 + EMA, distilled from G (K);
# L with YouTube Faces at 0.25 (M); K with YouTube Faces at 0.1, distilled from L (K2)
run default_ema
run default_ema_ytf0.25 data.sources.ytf68.weight=0.25
teacher=$(ls "$OUT"/default_ytf0.1/checkpoints/epoch_*.ckpt | tail -1)
run fast_w0.75_ema +experiment=faces68_fast model.distill.teacher="$teacher"
teacher=$(ls "$OUT"/default_ema/checkpoints/epoch_*.ckpt | tail -1)
run fast_w0.75_ema_ytf0.1 +experiment=faces68_fast model.distill.teacher="$teacher" data.sources.ytf68.weight=0.1
bash "$(dirname "$0")/eval_runs.sh" "$OUT"
