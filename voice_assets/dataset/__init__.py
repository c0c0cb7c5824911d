"""Domain code (dataset); plain functions, no dagster imports."""
