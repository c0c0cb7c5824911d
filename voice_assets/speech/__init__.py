"""Domain code (speech); plain functions, no dagster imports."""
