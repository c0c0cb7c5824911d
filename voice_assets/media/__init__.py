"""Domain code (media); plain functions, no dagster imports."""
