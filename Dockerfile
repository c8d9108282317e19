# The operator's image, the one charts/workspace-operator points to.
#
#   docker build -t ghcr.io/workspace-operator/workspace-operator:0.1.0 .
#
# Built by the release pipeline (the development machines have no container
# engine). The binary's runtime needs, which this image must meet, are tested
# by tests/helm.rs: it runs with the Deployment's arguments and environment,
# from a directory it cannot write, with no shell and nothing else on PATH.

# Build stage: the release binary, from the locked dependencies.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin workspace-operator \
 && install -D -m 0755 target/release/workspace-operator /out/workspace-operator

# Runtime stage: distroless (glibc, CA certificates, no shell, no package
# manager), as the unprivileged user 65532 the chart also runs as. The
# operator writes nothing to disk: the chart mounts the root filesystem
# read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/workspace-operator /usr/local/bin/workspace-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/workspace-operator"]
CMD ["run"]
