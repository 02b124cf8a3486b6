# llmforge on a CUDA machine. Build: docker build -t llmforge .
# Run the tiny demo:   docker run --gpus all llmforge
# Run a recipe:        docker run --gpus all -v $PWD/runs:/app/runs llmforge llmforge train configs/pretrain/llama3-1b.yaml
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CUDA build of torch from PyPI, then llmforge and its pinned stack (plus DeepSpeed for ZeRO).
RUN pip install --upgrade pip && pip install "torch>=2.4"
COPY pyproject.toml README.md ./
COPY llmforge ./llmforge
RUN pip install -e ".[deepspeed]"
COPY configs ./configs
COPY scripts ./scripts

CMD ["llmforge", "train", "configs/pretrain/tiny.yaml"]
