# The image the Helm chart runs (ghcr.io/hpcotel/hpcotel:<version>):
#   docker build -t ghcr.io/hpcotel/hpcotel:0.1.0 .
# glibc-based on purpose: the gpu receiver dlopens libnvidia-ml.so.1, which the NVIDIA
# container runtime mounts from the host driver, and that needs a glibc userland.
# Not built by CI (our CI machines have no Docker engine); CI builds and tests the same binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hpcotel

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hpcotel /usr/bin/hpcotel
ENTRYPOINT ["/usr/bin/hpcotel"]
CMD ["run"]
