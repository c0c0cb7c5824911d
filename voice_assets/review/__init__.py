"""Human review in Label Studio: tasks out, corrections back (no dagster imports here)."""
