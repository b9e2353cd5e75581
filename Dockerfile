# photograde serving images. Nothing here installs torch: serving is ONNX Runtime only.
#
#   docker build -t photograde:cpu .                      # CPU image (default target)
#   docker build -t photograde:gpu --target gpu .         # CUDA image with onnxruntime-gpu
#   docker run -p 8000:8000 photograde:cpu                # serves the shipped photograde-base
#   docker run -p 8000:8000 -v $PWD/bundle:/models/bundle:ro photograde:cpu   # your own bundle
#
# The image serves the bundle at /models/bundle (PHOTOGRADE_BUNDLE): the shipped base model
# unless a volume is mounted there; every setting in the README's configuration table can be
# passed as an environment variable.
#
# Every package comes from a locked, hashed requirements file (requirements/*.lock, regenerated
# by scripts/lock): pip refuses any file whose sha256 is not the locked one; the project's
# wheel is then installed without dependencies.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# --- build the wheel ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements/build.lock requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY vision vision
COPY tabular tabular
COPY fusion fusion
COPY serve serve
COPY training training
COPY photograde photograde
RUN python -m build --wheel --no-isolation --outdir /dist

# --- CPU serving image --------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PHOTOGRADE_BUNDLE=/models/bundle PHOTOGRADE_HOST=0.0.0.0 PHOTOGRADE_PORT=8000 \
    PHOTOGRADE_DATABASE_URL=sqlite:////data/photograde.db PHOTOGRADE_PHOTO_DIR=/data/photos
COPY requirements/serve.lock /tmp/
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir --require-hashes -r /tmp/serve.lock \
 && pip install --no-cache-dir --no-deps /tmp/*.whl && rm /tmp/*.whl /tmp/serve.lock \
 && useradd --create-home --uid 10001 photograde \
 && mkdir -p /data /models && chown photograde /data
COPY models/photograde-base /models/bundle
USER 10001
WORKDIR /home/photograde
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["photograde", "serve"]

# --- GPU serving image (CUDA execution provider) -------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    PHOTOGRADE_BUNDLE=/models/bundle PHOTOGRADE_HOST=0.0.0.0 PHOTOGRADE_PORT=8000 \
    PHOTOGRADE_DATABASE_URL=sqlite:////data/photograde.db PHOTOGRADE_PHOTO_DIR=/data/photos
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/serve-gpu.lock /tmp/
COPY --from=build /dist/*.whl /tmp/
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir --require-hashes -r /tmp/serve-gpu.lock \
 && pip install --no-cache-dir --no-deps /tmp/*.whl \
 && rm /tmp/*.whl /tmp/serve-gpu.lock \
 && useradd --create-home --uid 10001 photograde \
 && mkdir -p /data /models && chown photograde /data
COPY models/photograde-base /models/bundle
USER 10001
WORKDIR /home/photograde
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["photograde", "serve"]
