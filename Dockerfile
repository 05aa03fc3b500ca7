# rpc-bridge: `bridge serve` in a container.
#
#   docker build -t rpc-bridge .
#   docker build --build-arg BASE_IMAGE=registry.example.com/python:3.12-slim -t rpc-bridge .
#   docker run --rm -p 50051:50051 -p 9100:9100 rpc-bridge
#
# Configure it with BRIDGE_* environment variables (docs/configuration.md); see
# docs/deploy.md for compose and Kubernetes. Builds with docker, podman and buildah
# (no heredocs, no COPY --link).

# Any Debian-like image with Python >= 3.11 and the venv module; both stages use it.
ARG BASE_IMAGE=python:3.12-slim-bookworm

# -- build: the wheel, installed with its dependencies into a virtual environment --------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY endpoints ./endpoints
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install /tmp/wheels/*.whl \
    && /opt/venv/bin/bridge --version

# -- runtime: the venv, a non-root user, nothing else from the build -----------------------------
FROM ${BASE_IMAGE} AS runtime
ARG BRIDGE_UID=10001
RUN groupadd --system --gid "${BRIDGE_UID}" bridge \
    && useradd --no-log-init --system --uid "${BRIDGE_UID}" --gid "${BRIDGE_UID}" \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin bridge
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_GRPC_URL=grpc://0.0.0.0:50051 \
    BRIDGE_METRICS_PORT=9100 \
    BRIDGE_METRICS_HOST=0.0.0.0 \
    BRIDGE_LOG_FORMAT=json
WORKDIR /tmp
USER ${BRIDGE_UID}:${BRIDGE_UID}
# gRPC, Prometheus metrics
EXPOSE 50051 9100
# Readiness (docs/configuration.md, "Health"): unhealthy while the broker is lost.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bridge", "health", "--service", "readiness", "--timeout", "4"]
# `bridge serve` is PID 1: it handles SIGTERM itself (stop, drain for the grace period, exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge", "serve"]
