"""Domain code (synth); plain functions, no dagster imports."""
