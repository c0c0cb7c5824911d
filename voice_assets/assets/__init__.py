"""Thin Dagster assets over the domain code; one module per pipeline area."""
