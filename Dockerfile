# syntax=docker/dockerfile:1
# ringstream in a container (README "Installing"): built with the toolchain rust-toolchain.toml
# pins, run as a non-root user on debian:bookworm-slim (the builder's Debian release, so the
# binary finds the glibc it was linked against).
#
#   docker build -t ringstream \
#     --build-arg RINGSTREAM_COMMIT=$(git rev-parse --short=7 HEAD) \
#     --build-arg RINGSTREAM_COMMIT_DATE=$(git log -1 --format=%cs) .
#   docker run --rm -p 8080:8080 --stop-timeout 15 ringstream
#
# Under a container runtime's default seccomp profile io_uring is refused (EPERM): the server
# logs one line and runs on the poll driver. The README says how to allow io_uring instead.

# Keep in step with rust-toolchain.toml. rustup in the image reads that file in /src, so the
# pinned toolchain builds even when this lags (it is then downloaded first).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# .git is not in the build context: `--version` names the commit given as build arguments.
ARG RINGSTREAM_COMMIT=
ARG RINGSTREAM_COMMIT_DATE=
# The cache mounts keep the registry and the target dir between builds on this builder. The
# release profile keeps line tables for profiling; the image drops them (symbols stay, so a
# panic's backtrace still names functions).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo cargo build --release --locked --bin ringstream \
    && install -m 755 target/release/ringstream /usr/local/bin/ringstream

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin ringstream \
    && install -d -o ringstream -g ringstream /srv/ringstream
COPY --from=build /usr/local/bin/ringstream /usr/local/bin/ringstream
# The embedded default serves ./public at /files/: mount a directory at /srv/ringstream/public.
# A config of your own: mount it and run `serve --config FILE --listen 0.0.0.0:8080`.
WORKDIR /srv/ringstream
USER 10001:10001
EXPOSE 8080
# SIGTERM drains for up to drain_timeout (10 s): give `docker stop` longer (--stop-timeout 15,
# compose's stop_grace_period: 15s), else the runtime kills the drain at 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ringstream"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
