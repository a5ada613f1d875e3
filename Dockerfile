# One image for every Herald role: herald-router, herald-adapter,
# herald-gateway, herald-log, herald (CLI), herald-demo-sink and
# herald-demo-provider. The command chooses the role.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev zlib1g-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/herald target/release/herald-router target/release/herald-adapter \
       target/release/herald-gateway target/release/herald-log target/release/herald-demo-sink target/release/herald-demo-provider /out/

FROM debian:bookworm-slim
# /var/lib/herald-log: herald-log's index (--db /var/lib/herald-log/log.db); a
# Docker volume mounted there starts out owned by the herald user.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 herald \
    && install -d -o herald -g herald /var/lib/herald-log
COPY --from=build /out/ /usr/local/bin/
USER 10001
ENTRYPOINT []
CMD ["herald", "--help"]
