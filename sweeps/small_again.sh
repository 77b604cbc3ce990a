#!/usr/bin/env bash
# Issue "Small again" (docs/results.md): the small nets of sweeps/turned_faces.sh restarted on the
# default split (faces68's: the turned faces back in training, no profiled copies), taught as
# there and with the flip offset, for the 300-W split the issue's targets are set on.
#   H80KDD / B64KDD: H80KD5F / B64KD3F + 45 / 30 epochs from lr 0.0005 (2026-12-03, thirteenth
#                    session); their pairs: H80KD5F / B64KD3F
#   H80KDD2:         H80KDD restarted the same way, 30 epochs (does the default split keep paying?)
# then the final epoch of each on the validations of docs/results.md and the paired intervals.
#   bash sweeps/small_again.sh OUT_DIR TURNED_OUT_DIR   (TURNED_OUT_DIR: sweeps/turned_faces.sh's OUT_DIR)
set -euo pipefail
OUT=$1
TURNED=$2
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
net() { echo "model.net.input_size=$1" "model.net.widths=$2" "model.net.depths=$3" model.net.head_stride=8; }
TAUGHT=(+experiment=faces68_rep +model.distill.features=1.0 "${FLIP[@]}" trainer.check_val_every_n_epoch=5)
restart() { echo "init_from=$1/checkpoints/last.ckpt trainer.max_epochs=$2 model.optimizer.lr=0.0005"; }
run H80KDD "${TAUGHT[@]}" $(net 80 [24,48,96,160] [2,3,4,2]) $(restart "$TURNED/H80KD5F" 45)
run B64KDD "${TAUGHT[@]}" $(net 64 [16,32,96,144] [2,3,4,2]) $(restart "$TURNED/B64KD3F" 30)
run H80KDD2 "${TAUGHT[@]}" $(net 80 [24,48,96,160] [2,3,4,2]) $(restart "$OUT/H80KDD" 30)
