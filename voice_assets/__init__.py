"""voice-assets: per-character voice datasets from the episodes of a series, as Dagster assets."""

__version__ = "0.1.0"
