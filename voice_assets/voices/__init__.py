"""Voices: per-character voice models (trainers, readiness, reference packs, evaluation)."""
