# One image for every KillKrill component: `docker run IMAGE receiver http`, `... worker logs`,
# `... worker metrics`, `... dlq list`, `... db upgrade`. Runs as UID 10001, works with a
# read-only root filesystem (nothing is written outside /tmp, and nothing needs to be).
#
# Needs BuildKit (RUN --mount). With a registry:
#   docker build -t killkrill/killkrill:dev .
#   docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t killkrill/killkrill:dev .
# Here, with no registry, `make image` builds local Debian bases and passes them in
# (BASE_IMAGE=killkrill/debian:bookworm, BUILD_IMAGE=killkrill/debian:bookworm-build), with
# the host's pip settings and CA bundle as build secrets:
#   --secret id=pipconf,src=pip.conf   pip configuration (index URLs, proxy; cert = /run/secrets/ca)
#   --secret id=ca,src=ca-bundle.crt   the CA bundle pip must trust
# Secrets are mounted for one RUN step and are in no layer, of either stage.
#
# BASE_IMAGE: the runtime base, a Debian 12 with Python 3.11 as `python3`.
# BUILD_IMAGE: the build stage's base; the same Python at the same path, plus the venv module.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_CONFIG_FILE=/run/secrets/pipconf
RUN python3 -m venv /opt/killkrill
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when it changes.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=ca \
    --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && /opt/killkrill/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY killkrill ./killkrill
COPY log_worker ./log_worker
COPY metrics_worker ./metrics_worker
COPY shared ./shared
# The project as a wheel, installed without touching the dependencies; then pip and
# setuptools leave the venv, extension modules built with their symbol tables lose them
# (uvloop, sqlalchemy, aiohttp...: ~30 MB; vendored libraries under *.libs are left as
# they are), and every module is compiled once (unchecked-hash .pyc need no source
# timestamps, and a read-only image never writes its own).
RUN --mount=type=secret,id=pipconf --mount=type=secret,id=ca \
    --mount=type=cache,target=/root/.cache/pip \
    /opt/killkrill/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/killkrill/bin/pip install --no-deps /tmp/wheels/killkrill-*.whl \
    && /opt/killkrill/bin/pip uninstall -y -q pip setuptools \
    && if command -v strip >/dev/null; then \
         find /opt/killkrill -type f -name '*.so' | while read -r so; do \
           if readelf -S "$so" | grep -q '\.symtab'; then strip --strip-unneeded "$so"; fi; \
         done; \
       fi \
    && python3 -m compileall -q -f --invalidation-mode unchecked-hash /opt/killkrill \
    && /opt/killkrill/bin/killkrill --version

FROM ${BASE_IMAGE}
ARG VERSION=unknown
LABEL org.opencontainers.image.title="killkrill" \
      org.opencontainers.image.description="KillKrill receivers, workers and tools: one image, ENTRYPOINT killkrill" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN echo 'killkrill:x:10001:10001:KillKrill:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'killkrill:x:10001:' >> /etc/group
COPY --from=build /opt/killkrill /opt/killkrill
ENV PATH=/opt/killkrill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 10001:10001
WORKDIR /tmp
# HTTP receiver, syslog, and the ops ports of the receiver and the log and metrics workers.
EXPOSE 8080 5140 5140/udp 9140 9102 9103
ENTRYPOINT ["/opt/killkrill/bin/killkrill"]
CMD ["--help"]
