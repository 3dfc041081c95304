# im-server image: built from Debian bookworm packages with the same install
# script CI uses (scripts/install-deps), run as an unprivileged user.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN bash scripts/install-deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DIM_BUILD_TESTS=OFF \
 && cmake --build /build --target im-server imctl im-loadgen

FROM debian:bookworm-slim AS runtime
COPY scripts/install-deps /usr/local/lib/im/install-deps
RUN bash /usr/local/lib/im/install-deps --runtime && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin im
COPY --from=build /build/server/im-server /build/tools/imctl/imctl /build/tools/im-loadgen/im-loadgen /usr/local/bin/
USER im
ENV IM_LISTEN=0.0.0.0:7400
EXPOSE 7400
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD ["imctl", "--server", "127.0.0.1:7400", "--timeout", "2", "ping"]
ENTRYPOINT ["im-server"]
