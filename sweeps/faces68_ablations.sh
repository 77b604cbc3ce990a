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
# The recipes as these runs ran them are in conf/experiment/archive/: A-E (faces68_a, fast:
# faces68_fast_b) before NHWC and the 256-px crop cache; G-J (faces68_g) before EMA and 120
# epochs; L (faces68_l) and K (faces68_fast_k) before the deeper networks of U and V.
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
# YouTube Faces frames: none, weight 0.1, weight 0.25 (fast model, 80 epochs)
run fast_ytf0 +experiment=archive/faces68_fast_b data.sources.ytf68.weight=0
run fast_ytf0.1 +experiment=archive/faces68_fast_b data.sources.ytf68.weight=0.1
run fast_ytf0.25 +experiment=archive/faces68_fast_b data.sources.ytf68.weight=0.25
# in-the-wild augmentation (squeeze, roll, box noise, lighting, strong blur, low resolution, JPEG)
run fast_ytf0_robust +experiment=archive/faces68_fast_b data.sources.ytf68.weight=0 "${ROBUST[@]}"
# the default width, 90 epochs: without YouTube Faces (A), and at weight 0.1 (G)
run default_ytf0 +experiment=archive/faces68_a data.sources.ytf68.weight=0
run default_ytf0.1 +experiment=archive/faces68_g
# the fast model (half width then) distilled from A's best epoch (F)
teacher=$(ls "$OUT"/default_ytf0/checkpoints/epoch_*.ckpt | tail -1)
run fast_ytf0_distilled +experiment=archive/faces68_fast_k model.net.width_mult=0.5 callbacks.ema=null \
  model.distill.teacher="$teacher"
# G + EMA, 120 epochs (L); L with YouTube Faces at 0.25 (M); width 0.75 + EMA distilled from G (K);
# K distilled from L (K2)
run default_ema +experiment=archive/faces68_l
run default_ema_ytf0.25 +experiment=archive/faces68_l data.sources.ytf68.weight=0.25
teacher=$(ls "$OUT"/default_ytf0.1/checkpoints/epoch_*.ckpt | tail -1)
run fast_w0.75_ema +experiment=archive/faces68_fast_k model.distill.teacher="$teacher"
teacher=$(ls "$OUT"/default_ema/checkpoints/epoch_*.ckpt | tail -1)
run fast_w0.75_ema_ytf0.1 +experiment=archive/faces68_fast_k model.distill.teacher="$teacher"
bash "$(dirname "$0")/eval_runs.sh" "$OUT"
