#!/usr/bin/env bash
# Neighbouring-cell offsets, depth and the deeper fast model (docs/results.md, runs P-Y):
# what the decoding diagnosis (python -m smallnet_lit.tools.decoding) pointed at, one seed each.
#   bash sweeps/faces68_offsets_depth.sh OUT_DIR L_CKPT
# L_CKPT: run L's checkpoint (the recipe before this sweep: bash sweeps/faces68_ablations.sh,
# default_ema), the teacher of T and W and the reference of P-U. X, the shipped fast recipe,
# distils from U. P, S, R and T were stopped early when they trailed their reference (results.md
# gives the epoch); run them to the end here.
set -euo pipefail
OUT=$1
L_CKPT=$2
WIDTHS="model.net.widths=[32,64,128,256]" # the widths before V (faces68_neighbours.sh)
EPOCHS80=trainer.max_epochs=80 # the fast recipe's schedule before Z (faces68_neighbours.sh)
# L's and K's recipes (conf/experiment/archive/): the depth before U
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
# offsets trained in the ground-truth cell's neighbourhood (default width, 120 epochs)
run P_radius1_uniform +experiment=archive/faces68_l model.loss.loc_radius=1 model.loss.loc_weighting=uniform
run S_grid_prob +experiment=archive/faces68_l model.loss.loc_radius=7
run R_radius1_prob +experiment=archive/faces68_l model.loss.loc_radius=1
run T_fast_radius1_prob +experiment=archive/faces68_fast_k model.loss.loc_radius=1 model.distill.teacher="$L_CKPT"
# depth: 3-3-3-2 convs per stage (1.49 M parameters, 0.33 GMACs; the faces68 recipe until V),
# at the fast width distilled from L (W), and the fast recipe until F2: 2-3-3-2, distilled from U (X)
run U_depth3332 +experiment=faces68 "$WIDTHS" "model.net.depths=[3,3,3,2]"
run W_fast_depth3332 +experiment=faces68_fast "$WIDTHS" "model.net.depths=[3,3,3,2]" "$EPOCHS80" model.distill.teacher="$L_CKPT"
u_ckpt=$(ls "$OUT"/U_depth3332/checkpoints/epoch_*.ckpt | tail -1)
run X_fast_depth2332 +experiment=faces68_fast "$WIDTHS" "model.net.depths=[2,3,3,2]" "$EPOCHS80" model.distill.teacher="$u_ckpt"
run Y_fast_depth2332_no_teacher +experiment=faces68_fast "$WIDTHS" "model.net.depths=[2,3,3,2]" "$EPOCHS80" model.distill=null
bash "$(dirname "$0")/eval_runs.sh" "$OUT" --decoding
