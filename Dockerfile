# The karpenter-rs controller image: a static release binary on distroless/static, run as the
# non-root user 65532 the chart's securityContext expects.
#
#   docker build -t ghcr.io/karpenter-rs/karpenter:$(git describe --tags --always) .
#
# Not built in this repository's CI (no container engine there); see docs/helm.md. What goes in
# it is tested instead: `cargo xtask static-check --release` builds and strips the binary exactly
# as below, checks the ELF has no interpreter and no DT_NEEDED, and runs it chrooted into a
# directory laid out like this image (no shared libraries, uid 65532): --version, crds, and
# `karpenter run` resolving the API server's name through /etc/hosts and through DNS.
#
# glibc with +crt-static on the gnu target, not musl: it is what the check can build and run
# (only the gnu target is installable where the check runs), and musl's malloc is known to be
# slow under many threads. A static glibc cannot load libnss_*.so; bookworm's glibc 2.36
# resolves /etc/hosts and DNS names with the `files` and `dns` modules built into libc (the
# check proves it), whereas older releases dlopen()ed them, which distroless/static cannot
# serve: keep the build stage on bookworm or newer, and rerun the check when changing it. The
# explicit --target keeps +crt-static off build scripts and proc-macros.
#
# distroless/static also carries the CA bundle (/etc/ssl/certs/ca-certificates.crt) the AWS SDK
# and, for a kubeconfig without a CA, the kube client need: do not swap it for `scratch`.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables (for profiling benches): ~490 MiB. Stripping the debug
# info leaves ~68 MiB and keeps the symbols, so a backtrace still names functions.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p karpenter --bin karpenter --target x86_64-unknown-linux-gnu \
    && objcopy --strip-debug target/x86_64-unknown-linux-gnu/release/karpenter /karpenter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /karpenter /karpenter
USER 65532:65532
ENTRYPOINT ["/karpenter"]
CMD ["run"]
