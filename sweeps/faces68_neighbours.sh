#!/usr/bin/env bash
# PIPNet's neighbour regression, more depth at the default's parameter budget, and a longer
# fast schedule (docs/results.md, runs V, Z, NB, F2), one seed each; the reference runs are U and X
# of sweeps/faces68_offsets_depth.sh (the shipped recipes before this sweep). V and F2 are the
# shipped recipes now (faces68, faces68_fast); the fast runs were distilled from U, which was
# the shipped smallnet_300w when they ran: pass U's checkpoint to repeat them.
#   bash sweeps/faces68_neighbours.sh OUT_DIR U_CKPT
set -euo pipefail
OUT=$1
U_CKPT=$2
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
# V: U with 3-4-4-2 convs per stage and a narrower last stage (224): 1.49 M parameters, 0.40 GMACs
run V_depth3442_w224 +experiment=faces68 "model.net.widths=[32,64,128,224]" "model.net.depths=[3,4,4,2]"
X_NET=("model.net.widths=[32,64,128,256]" "model.net.depths=[2,3,3,2]") # X's network (0.75 of these widths)
# Z: the fast recipe before this sweep (X) for 120 epochs instead of 80
run Z_fast_120_epochs +experiment=faces68_fast "${X_NET[@]}" trainer.max_epochs=120 model.distill.teacher="$U_CKPT"
# NB: X (80 epochs) with each cell also regressing its landmark's 8 nearest points
run NB_fast_neighbours8 +experiment=faces68_fast "${X_NET[@]}" trainer.max_epochs=80 model.net.neighbours=8 \
  model.distill.teacher="$U_CKPT"
# F2: Z with V's change at the fast width: a 168-channel last stage, one more conv in stage 3
run F2_fast_depth2342_w224 +experiment=faces68_fast "model.net.widths=[32,64,128,224]" "model.net.depths=[2,3,4,2]" \
  model.distill.teacher="$U_CKPT"
bash "$(dirname "$0")/eval_runs.sh" "$OUT" --decoding
