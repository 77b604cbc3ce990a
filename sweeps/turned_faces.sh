#!/usr/bin/env bash
# Training on turned faces (docs/results.md, "Training on turned faces"): face-profiled copies
# of the training faces as train-only sources, judged on the real turned faces that
# data.turned_to_val=30 holds out (every run here uses that split, and so do the profiled folders).
#   W0 / W3 / W10: warm restarts of the shipped smallnet_300w, 40 epochs at lr 0.0005, profiled
#                  300-W and LFPW faces at weight 0 / 0.3 / 1.0 (2026-12-02, first session)
#   S0 / S3:       the 0.10-GMAC net of faces68_rep from scratch, no teacher (the shipped ones saw
#                  the held-out faces), 120 epochs, without / with profiled 300-W, LFPW (0.3) and
#                  YouTube Faces (0.1, as the real frames) faces; SF3: S3 at 0.048 GMACs
# then the final epoch of each on the three validations of the table, and the paired intervals.
#   bash sweeps/turned_faces.sh OUT_DIR [PROFILED_DIR]
set -euo pipefail
OUT=$1
PROFILED=${2:-$OUT/profiled}
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
profile() { # profile SOURCE NAME ARGS...: the training faces of the turned_to_val=30 split, once
  local source=$1 name=$2; shift 2
  [[ -f "$PROFILED/$name/profiling.json" ]] && return
  python -m smallnet_lit.tools.profile_faces "$source" "$PROFILED/$name" --turned-to-val 30 "$@"
}
profile ../shared/data/300w-train 300w-train --copies 2
profile ../shared/data/lfpw-train lfpw-train --copies 2 --photo-suffix none
profile ../shared/data/ytf68-train ytf68-train --copies 1 # 2,673 frames: one turned copy each

SPLIT=(data.turned_to_val=30)
source_at() { # source_at NAME FOLDER WEIGHT [EXTRA]: a train-only profiled source as an override
  echo "+data.sources.$1={root:$PROFILED/$2,weight:$3,train_only:true$4}"
}
WARM=(init_from=smallnet_300w trainer.max_epochs=40 model.optimizer.lr=0.0005 "${SPLIT[@]}")
run W0 +experiment=faces68 "${WARM[@]}"
run W3 +experiment=faces68 "${WARM[@]}" "$(source_at profiled300w 300w-train 0.3)" \
  "$(source_at profiledlfpw lfpw-train 0.3 ,photo_suffix:null)"
run W10 +experiment=faces68 "${WARM[@]}" "$(source_at profiled300w 300w-train 1.0)" \
  "$(source_at profiledlfpw lfpw-train 1.0 ,photo_suffix:null)"
SCRATCH=(model.distill=null "${SPLIT[@]}")
ALL_PROFILED=("$(source_at profiled300w 300w-train 0.3)" "$(source_at profiledlfpw lfpw-train 0.3 ,photo_suffix:null)"
  "$(source_at profiledytf ytf68-train 0.1)")
run S0 +experiment=faces68_rep "${SCRATCH[@]}"
run S3 +experiment=faces68_rep "${SCRATCH[@]}" "${ALL_PROFILED[@]}"
run SF3 +experiment=faces68_rep_fast "${SCRATCH[@]}" "${ALL_PROFILED[@]}"

# The table's columns: the turned split (every source; eval's yaw bins), the 300-W split, the plain split.
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  [[ -f "$dir/checkpoints/last.ckpt" ]] || continue
  for setting in "turned data=faces68 ${SPLIT[*]}" "300w data=ibug300w" "plain data=faces68"; do
    set -- $setting
    eval_dir="${OUT}_eval/${name}_$1"
    [[ -f "$eval_dir/metrics.json" ]] && continue
    python -m smallnet_lit.eval ckpt_path="$dir/checkpoints/last.ckpt" split=val "${@:2}" hydra.run.dir="$eval_dir" > /dev/null
  done
done
# Profiled against not, face by face on the turned faces (paired bootstrap intervals)
python -m smallnet_lit.tools.paired "${OUT}_eval/W3_turned" "${OUT}_eval/W0_turned" --min-yaw 30
python -m smallnet_lit.tools.paired "${OUT}_eval/S3_turned" "${OUT}_eval/S0_turned" --min-yaw 30
