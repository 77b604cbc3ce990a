#!/usr/bin/env bash
# Issue "Small again" (docs/results.md): the shipped fast model's network read at a smaller input.
# Its convs read any size and the head grid's pooling has no weights, so the 0.18-GMAC net at
# 128 px starts, unchanged, as a 0.078-GMAC net at 80 px (F80) or a 0.050-GMAC one at 64 px (F64),
# both with the head grid at stride 8 (10x10 / 8x8 cells), and learns the new scale from the
# shipped weights instead of from scratch. F96 reads 96 px (12x12 cells) without its first stage's
# second conv (the costliest: 0.012 GMACs at 48x48) to fit 0.10 GMACs: each stage starts from
# the shipped stage's first convs. On the default split, taught by the shipped default
# with its features, with the flip offset (as sweeps/small_again.sh).
#   F80 / F96 / F64: `smallnet_300w_fast` + 50 epochs from lr 0.001 (2026-12-03, fourteenth session)
#   D80:             the shipped default's network (32-64-128-224) at 80 px, 10x10 cells, with one conv in
#                    each of its first two stages (0.089 GMACs): more late-stage capacity, from
#                    `smallnet_300w`, 50 epochs from lr 0.001
#   F96L / F64L:     F96 / F64 again from their final weights, 80 epochs from lr 0.0005 (fifteenth session)
#   F96L2 / F64L2:   F96L / F64L again, 60 / 80 epochs from lr 0.0005 (the 60 fit the session)
#   F64L3 / F96L3:   F64L2 / F96L2 again, 60 / 40 epochs from lr 0.0005
#   F96L4:           F96L3 again, 50 epochs from lr 0.0005 (sixteenth session: the control for F96LR)
#   F96LR:           the same restart with RepVGG branches grown beside F96L3's convs, starting at
#                    zero (the same function at the start; folded at export: the same deployed net)
#   F64L4:           F64L3 again, 60 epochs (the control for F64TA)
#   F64TA:           the same restart taught by `smallnet_300w_fast` (with its features): F64's own
#                    network at 128 px, between the 0.40-GMAC default and the 0.05-GMAC student (a
#                    teacher assistant). F64LR (F64L4's restart with grown branches) was stopped at epoch 9 of 60,
#                    level with F64L4, once F96LR's branches were seen not to grow; F96TA (F96L4's
#                    restart taught the same way) at epoch 7 of 50, once F64TA had drawn level with
#                    F64L4 on 300-W and stayed behind it on the plain split
#   F96L5 / F64L5:   F96L4 / F64L4 again, 40 / 50 epochs from lr 0.0005
#   D64 / D64C:      the shipped default's whole network at 64 px (seventeenth session): more capacity at
#                    0.10 GMACs for fewer pixels. D64 keeps its 4x4 head grid's stride (16; 0.099 GMACs), D64C
#                    has the head grid at stride 8 (8x8 cells) without its first stage's third conv (0.095);
#                    from `smallnet_300w`, 60 epochs from lr 0.001
#   QF64:            `smallnet_300w_tiny` (F64L5's weights) fine-tuned for its int8 export: BatchNorm folded,
#                    quantization-aware (7-bit weights), 15 epochs from lr 3e-5
#   S96 / L96:       from scratch, the same recipe, 120 epochs (faces68_fast's length): S96 is F96's network,
#                    L96 puts the GMACs in the late stages (24-40-96-224 channels, 1-2-3-3 convs: 1.42 M
#                    parameters against 0.83 M, 0.097 GMACs): does more late-stage capacity train better?
#                    L96 was stopped at epoch 72, 0.08-0.10% behind S96 at every validation since epoch 24
#   S64:             F64's network (the tiny model's) at 64 px from scratch, the same recipe, 120 epochs
# then the final epoch of each on the validations of docs/results.md.
#   bash sweeps/small_from_shipped.sh OUT_DIR
set -euo pipefail
OUT=$1
source "$(dirname "$0")/lib.sh" # run NAME OVERRIDES...
FAST=(+experiment=faces68_fast +model.distill.features=1.0 "${FLIP[@]}" trainer.check_val_every_n_epoch=5)
at() { echo "model.net.input_size=$1" model.net.head_stride=8; }
from_shipped() { echo "init_from=smallnet_300w_fast trainer.max_epochs=$1 model.optimizer.lr=$2"; }
run F80 "${FAST[@]}" $(at 80) $(from_shipped 50 0.001)
run F96 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(from_shipped 50 0.001)
run F64 "${FAST[@]}" $(at 64) $(from_shipped 50 0.001)
run D80 "${FAST[@]}" $(at 80) model.net.width_mult=1.0 model.net.depths=[1,1,4,2] \
  init_from=smallnet_300w trainer.max_epochs=50 model.optimizer.lr=0.001
again() { echo "init_from=$OUT/$1/checkpoints/last.ckpt trainer.max_epochs=$2 model.optimizer.lr=0.0005"; }
run F96L "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96 80)
run F64L "${FAST[@]}" $(at 64) $(again F64 80)
run F96L2 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96L 60)
run F64L2 "${FAST[@]}" $(at 64) $(again F64L 80)
run F64L3 "${FAST[@]}" $(at 64) $(again F64L2 60)
run F96L3 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96L2 40)
run F96L4 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96L3 50)
run F96LR "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96L3 50) model.net.reparam=true
run F64L4 "${FAST[@]}" $(at 64) $(again F64L3 60)
run F64TA "${FAST[@]}" $(at 64) $(again F64L3 60) model.distill.teacher=smallnet_300w_fast
run F96L5 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] $(again F96L4 40)
run F64L5 "${FAST[@]}" $(at 64) $(again F64L4 50)
default_at() { echo "model.net.input_size=64 model.net.head_stride=$1 model.net.width_mult=1.0 model.net.depths=$2"; }
run D64 "${FAST[@]}" $(default_at 16 [3,4,4,2]) init_from=smallnet_300w trainer.max_epochs=60 model.optimizer.lr=0.001
run D64C "${FAST[@]}" $(default_at 8 [2,4,4,2]) init_from=smallnet_300w trainer.max_epochs=60 model.optimizer.lr=0.001
run QF64 "${FAST[@]}" $(at 64) init_from=smallnet_300w_tiny model.net.norm=false 'model.quant_aware={weight_bits:7}' \
  trainer.max_epochs=15 model.optimizer.lr=0.00003
run S96 "${FAST[@]}" $(at 96) model.net.depths=[1,3,4,2] trainer.max_epochs=120
run L96 "${FAST[@]}" $(at 96) model.net.width_mult=1.0 model.net.widths=[24,40,96,224] model.net.depths=[1,2,3,3] \
  trainer.max_epochs=120
run S64 "${FAST[@]}" $(at 64) trainer.max_epochs=120
# Eval: the 300-W split (the issue's) and the plain split of every source, then each run paired
# with the shipped fast model it started from (the same weights' price for the smaller input).
evaluate() { # NAME CKPT
  for faces in 300w plain; do
    local data=faces68; [[ $faces == 300w ]] && data=ibug300w
    [[ -f "${OUT}_eval/$1_$faces/metrics.json" ]] && continue
    python -m smallnet_lit.eval ckpt_path="$2" data=$data split=val hydra.run.dir="${OUT}_eval/$1_$faces" > /dev/null
  done
}
evaluate fast smallnet_300w_fast
for name in F80 F96 F64; do
  evaluate $name "$OUT/$name/checkpoints/last.ckpt"
  for faces in 300w plain; do python -m smallnet_lit.tools.paired "${OUT}_eval/${name}_$faces" "${OUT}_eval/fast_$faces"; done
done
evaluate D80 "$OUT/D80/checkpoints/last.ckpt"
for faces in 300w plain; do python -m smallnet_lit.tools.paired "${OUT}_eval/D80_$faces" "${OUT}_eval/F80_$faces"; done
# Each restart paired with the run it continues; F96LR and F64TA also with their controls.
pairs=(F96L:F96 F64L:F64 F96L2:F96L F64L2:F64L F64L3:F64L2 F96L3:F96L2 F96L4:F96L3 F96LR:F96L3 F64L4:F64L3 F64TA:F64L3 F96L5:F96L4 F64L5:F64L4)
# D64 with F96 (50 epochs from the shipped fast net) and F96L5 (the 0.10-GMAC chain's end), D64C with D64,
# S96 with F96 and F96L5, S64 with F64 and F64L5. QF64's int8 export: tools.int8_check (docs/speed.md).
for pair in "${pairs[@]}" F96LR:F96L4 F64TA:F64L4 D64:F96 D64:F96L5 D64C:D64 S96:F96 S96:F96L5 S64:F64 S64:F64L5; do
  name=${pair%:*} before=${pair#*:}
  evaluate $name "$OUT/$name/checkpoints/last.ckpt"
  for faces in 300w plain; do python -m smallnet_lit.tools.paired "${OUT}_eval/${name}_$faces" "${OUT}_eval/${before}_$faces"; done
done
