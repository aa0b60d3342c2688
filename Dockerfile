# syntax=docker/dockerfile:1
#
# The `callvault` command in a container: `docker run callvault:local worker run`.
# Configuration comes only from CALLVAULT_* environment variables (or a TOML file passed with
# --config / CALLVAULT_CONFIG); no secret is baked into the image.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the callvault wheel plus a wheel of every dependency ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# A C compiler for dependencies that ship no wheel for the target platform: faust-streaming
# publishes x86_64 wheels only, so on arm64 (e.g. Apple silicon) its Cython speedups are
# compiled here (without a compiler it would silently fall back to pure Python). The compiler
# stays in this stage. Not version-pinned: Debian drops superseded versions from its mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore admits only the packaging metadata and the five packages.
COPY . .
# Dependencies are resolved here, once; the runtime stage installs from this wheelhouse
# without touching an index.
RUN pip wheel --wheel-dir /wheels .

# --- runtime: a venv holding the wheel, run as an unprivileged user --------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="callvault" \
      org.opencontainers.image.description="Call-data pipeline: encrypted, in-region, retention-bound, audited."

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/callvault \
    CALLVAULT_HOME=/var/lib/callvault

RUN groupadd --system --gid 10001 callvault \
 && useradd --system --uid 10001 --gid callvault --home-dir /var/lib/callvault \
        --shell /usr/sbin/nologin callvault \
 && install -d -o callvault -g callvault -m 0750 /var/lib/callvault \
 && install -d -o callvault -g callvault -m 0700 /var/lib/callvault-keys

# The wheelhouse is bind-mounted from the build stage, so it never becomes an image layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheels callvault \
 && callvault --version

# Numeric, so that runtimes enforcing runAsNonRoot can verify it.
USER 10001:10001
# Writable state (faust data, CALLVAULT_HOME); docker-compose.yml mounts a volume here for the
# worker.
WORKDIR /var/lib/callvault

# worker web endpoint; SIP over UDP/TCP and TLS; RTP (the range the compose file publishes)
EXPOSE 16066/tcp 5060/udp 5060/tcp 5061/tcp 20000-20100/udp

ENTRYPOINT ["callvault"]
CMD ["--help"]
