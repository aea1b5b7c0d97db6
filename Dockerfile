# One image for every KillKrill component, run as a non-root user.
# No registry is reachable here: build a Debian base locally (debootstrap + docker import) and
# pass it in, e.g. `docker build --build-arg BASE_IMAGE=killkrill/debian:bookworm .`.
# The packaging issue completes and tests this file.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY killkrill ./killkrill
COPY log_worker ./log_worker
COPY metrics_worker ./metrics_worker
COPY shared ./shared
RUN python3 -m venv /opt/killkrill && /opt/killkrill/bin/pip install --no-cache-dir . \
    && useradd --system --uid 10001 killkrill
USER 10001
ENTRYPOINT ["/opt/killkrill/bin/killkrill"]
