# syntax=docker/dockerfile:1
# Relay's container image: the `relay` binary on a slim Debian base, as a non-root user, on a
# read-only root file system (PostgreSQL mode writes nothing; SQLite mode writes only /data).
#
#   docker build -t relay .
#   docker run --read-only -p 8080:8080 -e DATABASE_URL=postgres://... \
#     -e OAUTH_ENCRYPTION_KEY=... relay
#
# The base images are build arguments so that a registry mirror (or, in this project's CI,
# images made locally by scripts/container-base-images.sh) can stand in for Docker Hub. The
# builder must carry Rust 1.95 or later (the workspace's rust-version).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Only the product binary, in release. The cache mounts keep downloaded crates and compiled
# dependencies between builds on one machine (a rebuild after a code change takes a minute or
# two instead of a full build); the binary is copied out because the mount is not in the layer.
RUN --mount=type=cache,id=relay-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=relay-target-release,target=/src/target \
    cargo build --release --locked -p relay \
    && install -D -m 0755 target/release/relay /out/relay \
    && strip /out/relay

FROM ${RUNTIME_IMAGE}
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid relay --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin relay \
    && install -d -o relay -g relay -m 0700 /data
# Relay verifies providers' TLS certificates against the system's roots. The builder image
# carries Debian's ca-certificates bundle; copying the one file instead of installing the
# package keeps openssl and apt's lists out of the image (about 10 MB).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/relay /usr/local/bin/relay
# A numeric user, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
# /data holds the SQLite database and its generated key in the embedded mode (no DATABASE_URL);
# with PostgreSQL nothing is written there. Mount a volume on it for SQLite.
VOLUME ["/data"]
ENV RELAY_LISTEN=0.0.0.0:8080 \
    RELAY_DATA_DIR=/data \
    RELAY_LOG_FORMAT=json
EXPOSE 8080
# `relay health` probes /ready on RELAY_LISTEN's port over loopback: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["relay", "health"]
# Relay is PID 1 and handles SIGTERM itself: it stops accepting, lets requests in flight finish
# (server.shutdown_grace_secs, 30 s by default) and the background refresher save (10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["relay"]
CMD ["serve"]
