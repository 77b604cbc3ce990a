"""Measuring commands: benchmarks (speed, loader, smoothing, detectors), model size and
run comparison."""
