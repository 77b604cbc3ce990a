#!/usr/bin/env bash
# The WFLW recipe rehearsed at WFLW's size on rendered faces (docs/operations.md: WFLW at full
# size): the folder, reading and crop-cache building, cache size, loader throughput with 1 and
# 2 workers, one epoch of +experiment=baseline (time, faces/s, peak memory, loader wait) and
# the test report with its 6 attribute subsets.
#   bash sweeps/wflw_rehearsal.sh OUT [STAGE...]     stages: render cache loader train test
# Each stage writes OUT/<stage>.txt; /usr/bin/time -v gives wall and CPU time and peak memory.
set -euo pipefail
OUT=${1:?usage: wflw_rehearsal.sh OUT [render cache loader train test]}
shift
STAGES=${*:-render cache loader train test}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WFLW="$OUT/WFLW"
CACHE="$OUT/cache"
timed() { # timed STAGE COMMAND...: the command's output and its time -v report in OUT/STAGE.txt
  local stage=$1; shift
  echo "== $stage: $*"
  /usr/bin/time -v "$@" > "$OUT/$stage.txt" 2>&1 || { tail -20 "$OUT/$stage.txt"; exit 1; }
  grep -E "Elapsed|User time|System time|Maximum resident" "$OUT/$stage.txt"
}
for stage in $STAGES; do
  case $stage in
    render) timed render python -m smallnet_lit.tools.synthetic_wflw "$WFLW" --train 7500 --test 2500
      du -sh "$WFLW" ;;
    cache) # read both annotation lists and build the crop caches (what a first training run does)
      timed cache python -c "
import time
from hydra import compose, initialize_config_dir
from smallnet_lit.training.config import config_dir
from smallnet_lit.training.instantiate import datamodule_from
with initialize_config_dir(config_dir(), version_base='1.3'):
    cfg = compose('train', ['+experiment=baseline', 'data.root=$WFLW', 'data.cache.dir=$CACHE'])
for split in ('train', 'test'):  # the recipe's own cache settings, so training finds these caches
    t = time.perf_counter()
    dm = datamodule_from(cfg.data, cfg.model.net.input_size, only_split=split)
    print(f'{split}: {len(dm.sources[split])} faces read and cached in {time.perf_counter() - t:.1f} s')
"
      du -sh "$CACHE"/faces/* ;;
    loader) for workers in 1 2; do
        timed "loader_$workers" python -m smallnet_lit.tools.bench_loader +experiment=baseline data.root="$WFLW" \
          data.cache.dir="$CACHE" data.num_workers="$workers" +batches=40 hydra.run.dir="$OUT/runs/loader_$workers"
      done ;;
    train) for workers in 2 1; do # one epoch (5,000 faces) with 2 workers; 40 steps with 1
        limit=()
        [[ $workers == 1 ]] && limit=(trainer.limit_train_batches=40 trainer.limit_val_batches=5)
        timed "train_$workers" python -m smallnet_lit.train +experiment=baseline data.root="$WFLW" \
          data.cache.dir="$CACHE" data.num_workers="$workers" trainer.max_epochs=1 test=false \
          trainer.enable_progress_bar=false "${limit[@]}" hydra.run.dir="$OUT/runs/train_$workers"
        cat "$OUT/runs/train_$workers/throughput.json"
      done ;;
    test) timed test python -m smallnet_lit.eval ckpt_path="$OUT/runs/train_2/checkpoints/last.ckpt" data=wflw \
        data.root="$WFLW" data.cache.dir="$CACHE" split=test hydra.run.dir="$OUT/runs/test"
      grep -E '"test/nme(_[a-z]+)?"' "$OUT/runs/test/metrics.json" ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
