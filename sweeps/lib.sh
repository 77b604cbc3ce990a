# Shared by the sweep scripts (source it after setting OUT): `run NAME OVERRIDES...` trains one
# run into $OUT/NAME, and skips it when a finished run is already there, so a cut sweep resumes.
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  echo "== $name: $*"
  python -m smallnet_lit.train trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
