# The code-location image. On Kubernetes the code server, the run pods and every step pod run
# it (deploy/helm/values.yaml); the Dagster webserver and daemon use Dagster's own images.
#   docker build -t registry.example.com/voice-assets:$(git rev-parse --short HEAD) .
# The GPU profile (HTDemucs, pyannote, Whisper large-v3 + WhisperX, insightface):
#   docker build --build-arg PROFILE=gpu -t registry.example.com/voice-assets:gpu .
FROM python:3.11-slim-bookworm
ARG PROFILE=cpu

# libGL and GLib for opencv-python (insightface's import); PyAV's wheels carry FFmpeg.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/voice-assets
# The profile's lock first: the dependency layer is rebuilt only when the lock changes. torch
# comes from PyPI as its CUDA build, which the GPU step pods use and the CPU ones run without.
COPY requirements.lock requirements-gpu.lock ./
RUN case "$PROFILE" in \
      cpu) lock=requirements.lock ;; \
      gpu) lock=requirements-gpu.lock ;; \
      *) echo "PROFILE must be cpu or gpu, not '$PROFILE'" >&2; exit 2 ;; \
    esac \
    && pip install --no-cache-dir -r "$lock"
COPY pyproject.toml README.md workspace.yaml ./
COPY voice_assets ./voice_assets
COPY label_studio ./label_studio
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .

# The store (Parquet tables, audio, clips, models) is a volume every pod mounts at /data.
ENV VOICE_ASSETS_HOME=/data \
    VOICE_ASSETS_PROFILE=$PROFILE \
    VOICE_ASSETS_EXECUTOR=k8s \
    VOICE_ASSETS_TABLES=parquet \
    PYTHONUNBUFFERED=1
EXPOSE 3030
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", \
     "-m", "voice_assets.definitions"]
