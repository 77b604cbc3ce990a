# Shared by the sweep scripts (source it after setting OUT): `run NAME OVERRIDES...` trains one
# run into $OUT/NAME, and skips it when a finished run is already there, so a cut sweep resumes.
# Runs recorded before 2026-12-03's eleventh session trained with flip offset 0, the data configs'
# default then (now 1 px for the shared files, docs/data.md): to repeat one exactly, add
# "${NOFLIP[@]}" (data.flip_offset=0 with data=ibug300w); "${FLIP[@]}" is today's default, spelled out.
NOFLIP=(data.sources.ibug300w.flip_offset=0 data.sources.lfpw.flip_offset=0 data.sources.ytf68.flip_offset=0)
FLIP=(data.sources.ibug300w.flip_offset=1.0 data.sources.lfpw.flip_offset=1.0 data.sources.ytf68.flip_offset=1.0)
run() {
  local name=$1; shift
  if [[ -f "$OUT/$name/checkpoints/last.ckpt" && -f "$OUT/$name/csv/metrics.csv" ]]; then echo "skip $name (done)"; return; fi
  echo "== $name: $*"
  python -m smallnet_lit.train trainer.enable_progress_bar=false hydra.run.dir="$OUT/$name" "$@"
}
