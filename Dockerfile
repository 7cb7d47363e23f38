# The `annals` binary in a slim image, for docker-compose.yml. native-tls (the Elasticsearch
# client) links OpenSSL: libssl-dev to build, libssl3 to run.
FROM rust:1.90-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin annals

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/annals /usr/local/bin/annals
RUN mkdir -p /var/lib/annals
EXPOSE 8080
ENTRYPOINT ["annals"]
CMD ["serve"]
