# The py-code-mode MCP server (streamable HTTP) as an image, for deploy/compose.yaml.
#
# Build from the repository root:  docker build -f deploy/server.Dockerfile -t py-code-mode-server .
#
# Agent code runs in the subprocess executor inside this container, jailed with
# bubblewrap; for untrusted code at scale point the container executor at remote
# Docker engines instead (see docs/kubernetes.md and the README's "Running it for
# many agents"). Build arguments:
#   PYTHON_IMAGE  base image with python3 >= 3.11 and pip (default python:3.12-slim)

ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && pip install uv

COPY pyproject.toml README.md /src/
COPY src /src/src
RUN pip install "/src[redis]" && rm -rf /src

RUN useradd --create-home --uid 10001 agent
USER agent
WORKDIR /home/agent
EXPOSE 8765

ENTRYPOINT ["py-code-mode-mcp"]
CMD ["--transport", "http", "--host", "0.0.0.0", "--port", "8765"]
