"""Domain code of the dataset stage; plain functions, no dagster imports.

- ``prosody``: F0, energy, speaking rate and voice-effort features of an utterance.
- ``emotion``: emotion backends (transformers, emotion2vec, dimensional) and the per-series
  prosody classifier trained on human labels; ``tag_emotions`` picks human > model > prosody.
- ``quality``: clip metrics (clipping, WADA-SNR, bandwidth, residual music) and the gates.
- ``clips``: cut, trim, normalise (optionally denoise) every utterance from the vocal stem.
- ``fingerprint``: Haitsma-Kalker fingerprints to find repeated audio (recaps, songs).
- ``splits``: leakage-safe, ledger-stable train/validation/test by scene or episode.
- ``exports``: Parquet, HF datasets, LJSpeech, GPT-SoVITS, RVC and F5-TTS folders.
- ``cards``: the per-character dataset card.
"""
