# robsond: a two-stage build. The builder compiles the workspace with the pinned toolchain; the
# runtime image holds the binary, CA roots and nothing else, and runs as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p robsond \
 && install -D target/release/robsond /out/robsond

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/robsond robsond \
 && install -d -o robsond -g robsond /var/lib/robsond/journal
COPY --from=build /out/robsond /usr/local/bin/robsond
USER robsond
ENV ROBSON_JOURNAL_DIR=/var/lib/robsond/journal \
    ROBSON_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# SIGTERM stops new entries, lets in-flight orders resolve, flushes the journal and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/robsond"]
CMD ["run"]
