# syntax=docker/dockerfile:1
#
# Keygate container image (docs/deploy.md):
#   docker build -t keygate .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 -p 9090:9090 \
#     -v keygate-data:/var/lib/keygate -v ./policy.yml:/etc/keygate/policy.yml:ro keygate
#
# The base images are pinned to a release; pin them by digest as well (`image:tag@sha256:...`)
# for byte-for-byte repeatable builds.

# Build: the same Debian release (bookworm, glibc 2.36) as the runtime image.
FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p keygate \
    && install -D -m 0755 target/release/keygate /out/usr/local/bin/keygate \
    && install -d -m 0700 /out/var/lib/keygate \
    && install -D -m 0644 deploy/keygate.toml /out/etc/keygate/keygate.toml

# Run: distroless (glibc, CA certificates, no shell or package manager), as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/keygate /usr/local/bin/keygate
COPY --from=build /out/etc/keygate/keygate.toml /etc/keygate/keygate.toml
COPY --from=build --chown=65532:65532 /out/var/lib/keygate /var/lib/keygate
USER 65532:65532
# The only directory Keygate writes (secrets, access keys, usage ledger, master key and admin
# token unless given otherwise): everything else can be mounted read-only.
VOLUME ["/var/lib/keygate"]
# Settings: /etc/keygate/keygate.toml (mount your own over it), overridden by KEYGATE_* variables
# (`docker run -e KEYGATE_REDIS=...`) and by flags after `serve`. The policy is expected at
# /etc/keygate/policy.yml.
ENV KEYGATE_CONFIG=/etc/keygate/keygate.toml
# Client traffic, and the admin listener (/healthz, /readyz, /metrics, the dashboard).
EXPOSE 8080 9090
# No curl in distroless: the binary checks itself, on the admin listener's /healthz (moved the
# admin listener? `-e KEYGATE_HEALTHCHECK_URL=...` too).
ENV KEYGATE_HEALTHCHECK_URL=http://127.0.0.1:9090/healthz
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/keygate", "healthcheck", "--timeout", "4s"]
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve"]
