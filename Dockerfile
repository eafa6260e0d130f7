# syntax=docker/dockerfile:1
# One image for every service: `docker run IMAGE run agent`, `docker run IMAGE topics apply`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/pipeline
ENV PATH=/opt/pipeline/bin:$PATH
WORKDIR /src
# Dependencies first, so that code changes reuse the cached dependency layer.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
# The dependencies and the OTLP exporter (the `otel` extra), so OTEL_* can point anywhere.
print("\n".join(project["dependencies"] + project["optional-dependencies"]["otel"]))
PY
RUN pip install --requirement /tmp/requirements.txt
# Everything pyproject.toml builds into the wheel: the package, and the folders it
# force-includes as pipeline/_data (schemas, topics, the webhook rules, the knowledge base).
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY topics ./topics
COPY deploy/webhooks ./deploy/webhooks
COPY deploy/knowledge ./deploy/knowledge
RUN pip install --no-deps . \
 && python -m compileall -q /opt/pipeline/lib \
 && pipeline --version \
 && pipeline events > /dev/null

# --- runtime: the virtual environment only; no compilers, no pip cache, no sources ---
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 pipeline \
 && useradd --system --uid 10001 --gid pipeline --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin pipeline
COPY --from=build /opt/pipeline /opt/pipeline
ENV PATH=/opt/pipeline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIPELINE_METRICS_PORT=8000
# Numeric user, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /tmp
# 8000: /metrics, /healthz, /readyz on every service; 8080: the gateway's HTTP API.
EXPOSE 8000 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PIPELINE_METRICS_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["pipeline"]
CMD ["--help"]
