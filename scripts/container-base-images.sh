#!/usr/bin/env bash
# Makes the two base images the Dockerfile builds FROM, locally, for machines that reach
# Debian's package archive but no container registry (this project's CI). Users build against
# their registry's docker.io/library/rust and debian images instead; this only stands in for them:
#   localhost/relay-ci/debian:bookworm-slim      debootstrap --variant=minbase bookworm, trimmed
#                                                like debian:bookworm-slim (no docs, man, locales)
#   localhost/relay-ci/rust:1.95-slim-bookworm   the same plus gcc/libc6-dev and the host's Rust
#                                                toolchain (rustup cannot download one here)
# Each image is made only when absent (set REBUILD_BASE_IMAGES=1 to remake them), so a second
# run on the same machine costs nothing.
set -euo pipefail

RUNTIME_TAG=${RUNTIME_TAG:-localhost/relay-ci/debian:bookworm-slim}
BUILDER_TAG=${BUILDER_TAG:-localhost/relay-ci/rust:1.95-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PODMAN=${PODMAN:-podman}

log() { printf '== %s\n' "$*" >&2; }
have_image() { [ "${REBUILD_BASE_IMAGES:-0}" != 1 ] && $PODMAN image exists "$1"; }

work=$(mktemp -d /var/tmp/relay-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What debian:bookworm-slim leaves out: documentation, manuals and translations.
slim_dpkg_excludes() {
  cat <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CONF
}

trim_rootfs() {
  local root=$1
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/* "$root"/tmp/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache
  find "$root"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
}

make_rootfs() {
  local root=$1 include=$2
  log "debootstrap --variant=minbase bookworm ($include)"
  debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; return 1; }
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  slim_dpkg_excludes >"$root/etc/dpkg/dpkg.cfg.d/docker"
  # The image's apt sources, as in the official image.
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" >"$root/etc/apt/sources.list"
  trim_rootfs "$root"
}

if ! have_image "$RUNTIME_TAG"; then
  make_rootfs "$work/runtime" ""
  tar -C "$work/runtime" -c . | $PODMAN import --change 'CMD ["bash"]' - "$RUNTIME_TAG" >/dev/null
  rm -rf "$work/runtime"
  log "made $RUNTIME_TAG"
fi

if ! have_image "$BUILDER_TAG"; then
  command -v rustc >/dev/null || { echo "rustc not found: the builder image copies the host's toolchain" >&2; exit 1; }
  sysroot=$(rustc --print sysroot)
  make_rootfs "$work/builder" "ca-certificates,gcc,libc6-dev,pkg-config"
  # The toolchain without its documentation (share/ is mostly HTML), where rust:*-slim has it.
  mkdir -p "$work/builder/usr/local/rust"
  cp -a "$sysroot/bin" "$sysroot/lib" "$work/builder/usr/local/rust/"
  [ -d "$sysroot/libexec" ] && cp -a "$sysroot/libexec" "$work/builder/usr/local/rust/"
  # Cargo in the builder reaches crates.io the way the host does: with the host's CA bundle,
  # which may hold a TLS-inspecting proxy's CA. It goes to its own path, named by
  # CARGO_HTTP_CAINFO, so that Debian's bundle (which the runtime image copies) stays as it is.
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$work/builder/usr/local/share/host-ca-bundle.crt"
  tar -C "$work/builder" -c . | $PODMAN import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV CARGO_HTTP_CAINFO=/usr/local/share/host-ca-bundle.crt' \
    --change 'CMD ["bash"]' - "$BUILDER_TAG" >/dev/null
  rm -rf "$work/builder"
  log "made $BUILDER_TAG ($(rustc --version))"
fi

# Stand-ins for the official postgres and redis images that compose.yaml names, made from the
# Debian base with Debian's packages. They honour the same interface compose.yaml uses:
# POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and PGDATA for PostgreSQL, `redis-server ARGS`.
POSTGRES_TAG=${POSTGRES_TAG:-localhost/relay-ci/postgres:15-bookworm}
REDIS_TAG=${REDIS_TAG:-localhost/relay-ci/redis:7-bookworm}

build_from() {
  local tag=$1 dir=$2
  $PODMAN build --isolation=chroot --format docker --build-arg BASE="$RUNTIME_TAG" -t "$tag" "$dir" \
    >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; return 1; }
  log "made $tag"
}

if ! have_image "$POSTGRES_TAG"; then
  mkdir -p "$work/postgres"
  cat >"$work/postgres/Containerfile" <<'CONTAINERFILE'
ARG BASE
FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 && rm -rf /var/lib/apt/lists/* && rm -f /etc/postgresql/15/main/*.conf.dpkg*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
CONTAINERFILE
  cat >"$work/postgres/entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# Initialises $PGDATA on first start like the official image (password auth over TCP), then
# runs the command as the postgres user.
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  # Like the official image: the database POSTGRES_DB (default: the user's name) exists.
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    createdb -U "$user" "$db"
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec "$@"
ENTRYPOINT
  chmod +x "$work/postgres/entrypoint.sh"
  build_from "$POSTGRES_TAG" "$work/postgres"
fi

if ! have_image "$REDIS_TAG"; then
  mkdir -p "$work/redis"
  cat >"$work/redis/Containerfile" <<'CONTAINERFILE'
ARG BASE
FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      redis-server && rm -rf /var/lib/apt/lists/*
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]
CONTAINERFILE
  build_from "$REDIS_TAG" "$work/redis"
fi
