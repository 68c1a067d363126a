# The karpenter-rs controller image: a static (musl) release binary on distroless/static, run
# as the non-root user 65532 the chart's securityContext expects.
#
#   docker build -t ghcr.io/karpenter-rs/karpenter:$(git describe --tags --always) .
#
# Not built in this repository's CI (no container engine there); see docs/helm.md.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools cmake \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p karpenter --bin karpenter --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/karpenter /karpenter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /karpenter /karpenter
USER 65532:65532
ENTRYPOINT ["/karpenter"]
CMD ["run"]
