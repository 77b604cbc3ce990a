#!/usr/bin/env bash
# The flip offset (docs/data.md, "Flip offset"; docs/results.md): the shared 300-W-format files
# place their points about 1 px right of the mirror axis, which a net trained with plain flips
# cannot learn. The clean pair is in sweeps/turned_faces.sh (H80RF against H80R); here the shipped
# default learns it:
#   VRF: smallnet_300w restarted for 20 epochs from lr 0.0005 with the files' flip offset (its
#        own restart, VR, ran 60 epochs without), validated every 5th epoch
# then its final epoch on the 300-W split and on all sources, beside the shipped default.
#   bash sweeps/flip_offset.sh OUT_DIR
set -euo pipefail
OUT=$1
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
run VRF +experiment=faces68 init_from=smallnet_300w trainer.max_epochs=20 model.optimizer.lr=0.0005 "${FLIP[@]}" \
  trainer.check_val_every_n_epoch=5
for model in "$OUT/VRF/checkpoints/last.ckpt" smallnet_300w; do
  name=$([[ $model == smallnet_300w ]] && echo shipped || echo VRF)
  for setting in "300w data=ibug300w" "all data=faces68"; do
    set -- $setting
    eval_dir="${OUT}_eval/${name}_$1"
    [[ -f "$eval_dir/metrics.json" ]] || python -m smallnet_lit.eval ckpt_path="$model" split=val "${@:2}" hydra.run.dir="$eval_dir" > /dev/null
  done
done
for faces in 300w all; do python -m smallnet_lit.tools.paired "${OUT}_eval/VRF_$faces" "${OUT}_eval/shipped_$faces"; done
