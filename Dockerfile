# llmforge in a container. PyPI's torch wheels carry their own CUDA libraries, so the base is plain Python.
#   Build:                    docker build -t llmforge .
#   The tiny lifecycle demo:  docker run --rm -v "$PWD/runs:/app/runs" llmforge
#   A recipe on GPUs:         docker run --rm --gpus all -v "$PWD/runs:/app/runs" llmforge \
#                                 llmforge train configs/pretrain/llama3-1b.yaml
#   A CPU-only image:         docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t llmforge-cpu .
FROM python:3.11.11-slim-bookworm

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# a compiler for DeepSpeed's just-in-time ops; git so run.json can record the code's commit
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 llmforge \
    && python -m venv /opt/venv

WORKDIR /app

# torch first and pinned, then the pinned stack read from pyproject.toml alone: a change to the code below
# reuses these layers instead of reinstalling everything (TORCH_SPEC pins torch; hadolint cannot see into it)
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['deepspeed']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY llmforge ./llmforge
COPY configs ./configs
COPY scripts ./scripts
RUN pip install --no-deps . && mkdir -p /app/runs && chown llmforge:llmforge /app/runs

USER 1000:1000
CMD ["llmforge", "pipeline", "configs/pipelines/tiny-rlhf.yaml"]
