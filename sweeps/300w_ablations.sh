#!/usr/bin/env bash
# One-change-at-a-time ablations of +experiment=300w_best on the 300-W training faces, at a
# short budget (EPOCHS, default 8) so that all of them fit a CPU afternoon. Each run tests
# nothing (the 300-W config has no test split) and is validated on the seeded by-photo split.
#   bash sweeps/300w_ablations.sh [OUT_DIR] [EPOCHS]
# then: python -m smallnet_lit.tools.compare OUT_DIR
set -euo pipefail
OUT=${1:-multirun/300w_ablations}
EPOCHS=${2:-8}
# The table's reference is 300w_best as it was then, with beta 1 (the beta 0.25 row is why
# 300w_best now uses 0.25): every run gets model.loss.beta=1 unless it sets beta itself.
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  local beta=(model.loss.beta=1)
  [[ " $* " == *" model.loss.beta="* ]] && beta=()
  echo "== $name: ${beta[*]} $*"
  python -m smallnet_lit.train +experiment="${EXPERIMENT:-300w_best}" trainer.max_epochs="$EPOCHS" \
    trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "${beta[@]}" "$@"
}
run reference
run fixed_delta model.loss.fixed_delta=true
run beta_0.25 model.loss.beta=0.25
run alpha_0.25 model.loss.alpha=0.25
run width_0.5 model.net.width_mult=0.5
run no_batchnorm model.net.norm=false
run no_augmentation data.train_crop.shift=0 data.train_crop.scale_jitter=0 data.train_crop.rotation=0 \
  data.train_crop.flip=0 data.photometric=null
run sgd_step_source model/optimizer=sgd model/scheduler=step "model.scheduler.milestones=[6]"
run input_160 model.net.input_size=160
# The source's own setup (224 px, 64-64-128-128-256, no BatchNorm, SGD 0.01 with step decay,
# 5000 augmented samples per epoch) on the same faces: 2 epochs = 10,000 samples, about the
# samples of the 8-epoch runs above.
EXPERIMENT=baseline EPOCHS=2 run baseline_source data=ibug300w "model.scheduler.milestones=[2]"
python -m smallnet_lit.tools.compare "$OUT"
# README's table: every run's last checkpoint on the validation split, with both decodings.
for dir in "$OUT"/*/; do
  for decode in argmax soft; do
    eval_dir="${OUT}_eval/$(basename "$dir")_$decode"
    [[ -f "$dir/checkpoints/last.ckpt" && ! -f "$eval_dir/metrics.json" ]] || continue
    python -m smallnet_lit.eval ckpt_path="$dir/checkpoints/last.ckpt" data=ibug300w split=val \
      decode="$decode" hydra.run.dir="$eval_dir" > /dev/null
    echo "$(basename "$dir") $decode: $(grep -E '"val/(nme|fr|auc)"' "$eval_dir/metrics.json" | tr -d ' \n')"
  done
done
