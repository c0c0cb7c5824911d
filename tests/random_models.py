"""Randomly initialised heavy models, saved in the on-disk layout `voice-assets models pull`
leaves under the models dir, so the real loading and inference code runs with no download.

``full=True`` builds the real architectures (HTDemucs, pyannote's PyanNet + WeSpeaker
ResNet34, wav2vec2-base): their compute is that of the real models, for timing on a GPU.
``full=False`` keeps every interface but shrinks the networks, for tests on two cores.
The weights are random, so outputs are shaped right and meaningless: tests built on these
check loading, plumbing and invariants, never accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from voice_assets.models import get
from voice_assets.paths import Layout


def htdemucs(repo: Path, name: str = "htdemucs", full: bool = False) -> Path:
    """HTDemucs saved exactly as demucs's pretrained repos are: a `<sig>-<sha256[:8]>.th`
    package (klass/args/kwargs/state) and a `<name>.yaml` bag naming it."""
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum

    torch.manual_seed(0)
    sources = ["drums", "bass", "other", "vocals"]
    if full:  # the published htdemucs: demucs's defaults for the hybrid transformer
        model = HTDemucs(sources=sources, segment=7.8)
    else:
        model = HTDemucs(sources=sources, channels=4, depth=4, t_layers=1, t_heads=2,
                         t_hidden_scale=1.0, dconv_comp=4, segment=4)
    args, kwargs = model._init_args_kwargs
    repo.mkdir(parents=True, exist_ok=True)
    signature = "955717e8"  # the published htdemucs's: its yaml and file name carry it
    save_with_checksum({"klass": HTDemucs, "args": args, "kwargs": kwargs,
                        "state": get_state(model, None, half=False)}, repo / f"{signature}.th")
    (repo / f"{name}.yaml").write_text(f"models: ['{signature}']\n")
    return repo


def pyannote_pipeline(root: Path, full: bool = False) -> Path:
    """The speaker-diarization-community-1 layout: config.yaml naming `$model/segmentation`
    (PyanNet, powerset over 3 speakers), `$model/embedding` (WeSpeaker ResNet34) and
    `$model/plda` (VBx's x-vector transform and PLDA), each as pyannote saves it."""
    import lightning
    import torch
    import yaml
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)

    def save(model: torch.nn.Module, specs: Specifications, folder: Path) -> None:
        model.specifications = specs
        model.setup()
        ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__}
        model.on_save_checkpoint(ckpt)  # pyannote's own metadata: versions, class, specs
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, folder / "pytorch_model.bin")

    lstm = {"hidden_size": 128, "num_layers": 4} if full else {"hidden_size": 16,
                                                                  "num_layers": 1}
    save(PyanNet(sincnet={"stride": 10}, lstm=lstm, linear={"hidden_size": 128 if full else 16}),
         Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
                        duration=10.0, warm_up=(0.0, 0.0),
                        classes=["speaker#1", "speaker#2", "speaker#3"],
                        powerset_max_classes=2, permutation_invariant=True),
         root / "segmentation")
    save(WeSpeakerResNet34(),
         Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                        duration=10.0),
         root / "embedding")
    rng = np.random.default_rng(0)
    (root / "plda").mkdir(exist_ok=True)
    np.savez(root / "plda" / "xvec_transform.npz", mean1=rng.normal(size=256),
             mean2=rng.normal(size=128), lda=rng.normal(size=(256, 128)))
    rotation, _ = np.linalg.qr(rng.normal(size=(128, 128)))
    np.savez(root / "plda" / "plda.npz", mu=rng.normal(size=128) * 0.1, tr=rotation,
             psi=np.sort(rng.uniform(0.5, 5.0, 128))[::-1])
    (root / "config.yaml").write_text(yaml.safe_dump({
        "version": "4.0.0",
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": {
            "clustering": "VBxClustering", "embedding": "$model/embedding",
            "embedding_batch_size": 32, "embedding_exclude_overlap": True,
            "plda": "$model/plda", "segmentation": "$model/segmentation",
            "segmentation_batch_size": 32}},
        "params": {"clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
                   "segmentation": {"min_duration_off": 0.0}},
    }))
    return root


# facebook/wav2vec2-base-960h's character vocabulary (CTC blank is <pad>, words split by |).
WAV2VEC2_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def wav2vec2_ctc(folder: Path, full: bool = False) -> Path:
    """A wav2vec2 CTC model with its processor, as `save_pretrained` writes them (the layout
    of facebook/wav2vec2-base-960h, which WhisperX aligns English with)."""
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(WAV2VEC2_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab), word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    size = {} if full else dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, num_conv_pos_embeddings=16,
                                num_conv_pos_embedding_groups=4,
                                conv_dim=(32, 32, 32, 32, 32, 32, 32))
    config = Wav2Vec2Config(vocab_size=len(WAV2VEC2_VOCAB), pad_token_id=0, **size)
    Wav2Vec2ForCTC(config).eval().save_pretrained(folder)
    return folder


def whisper_ct2(folder: Path, full: bool = False) -> Path:
    """A multilingual Whisper in CTranslate2's format, as faster-whisper loads the pulled
    `faster-whisper-large-v3`: ``full`` has large-v3's shape (1280-d, 32 + 32 layers, 128 mel
    bins; 1.55 B parameters, float16). The tokenizer is the packaged Whisper base's (51,865
    tokens: large-v3 has one more, a language Cantonese, which random weights never need)."""
    import json
    import tempfile

    import ctranslate2
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    base = get("whisper-base").require()
    dims = (dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                 decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120,
                 num_mel_bins=128) if full else
            dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                 num_mel_bins=80))
    ids = dict(decoder_start_token_id=50258, eos_token_id=50257, pad_token_id=50257,
               bos_token_id=50257)
    model = WhisperForConditionalGeneration(WhisperConfig(vocab_size=51865, **dims, **ids))
    layers = dims["decoder_layers"]
    model.generation_config = GenerationConfig(
        **ids, is_multilingual=True, no_timestamps_token_id=50363, suppress_tokens=[],
        lang_to_id={"<|en|>": 50259, "<|ja|>": 50266},
        task_to_id={"transcribe": 50359, "translate": 50358},
        begin_suppress_tokens=[220, 50257],
        # Cross-attention heads for word timestamps, in the last layers (an index past the
        # decoder crashes CTranslate2's aligner).
        alignment_heads=[[layers - 1 - i, i % dims["decoder_attention_heads"]]
                         for i in range(min(4, layers))])
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(base / "tokenizer.json", Path(tmp) / "tokenizer.json")
        ctranslate2.converters.TransformersConverter(tmp, copy_files=["tokenizer.json"]).convert(
            str(folder), quantization="float16", force=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "feature_size": dims["num_mel_bins"], "sampling_rate": 16000, "hop_length": 160,
        "chunk_length": 30, "n_fft": 400}))
    return folder


def punkt_tables(root: Path) -> Path:
    """NLTK's punkt_tab layout for English with empty parameters (no learned abbreviations:
    splits at every sentence-final period), where `models pull nltk-punkt-tab` unpacks the
    real tables."""
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt",
                 "ortho_context.tab"):
        (folder / name).touch()
    return root


def gpu_profile_models(layout: Layout, full: bool = False) -> list[str]:
    """Every model the GPU profile names, under ``layout.models`` as `models pull` lays
    them out. With ``full``, Whisper large-v3's shape with random weights (for timing);
    otherwise its place is taken by the packaged tiny.en (real weights, same format and
    loader), so the transcript stage still hears words on two cores."""
    from random_insightface import make_models

    htdemucs(layout.models / "htdemucs", full=full)
    pyannote_pipeline(layout.models / "pyannote-diarization-community-1", full=full)
    wav2vec2_ctc(layout.models / "wav2vec2-base-960h", full=full)
    punkt_tables(layout.models / "nltk-punkt-tab")
    make_models(str(layout.models / "insightface-buffalo_l"), profile="full" if full else "tiny")
    made = ["htdemucs", "pyannote-diarization-community-1", "wav2vec2-base-960h",
             "insightface-buffalo_l"]
    target = layout.models / "whisper-large-v3"
    if full:
        whisper_ct2(target, full=True)
    elif not target.exists():
        shutil.copytree(get("whisper-tiny.en").require(layout), target)
    return [*made, "whisper-large-v3"]
