# Builds both binaries: the worker (llama.cpp through cgo) and the SSE bridge.
#   docker build -t llmworker .
FROM golang:1.26-bookworm AS build
# llama.cpp's vendored headers that the Go module download leaves out (the
# Makefile's BUILD_PACKAGES).
RUN apt-get update && apt-get install -y --no-install-recommends nlohmann-json3-dev libstb-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The Makefile sets the cgo flags llama.cpp needs; the binaries land in bin/.
RUN make build

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home llm
COPY --from=build /src/bin/worker /src/bin/ssebridge /usr/local/bin/
USER llm
WORKDIR /home/llm
EXPOSE 8080
# compose.yaml names the binary to run; the bridge is the default.
CMD ["ssebridge", "-nats", "nats://nats:4222", "-listen", "0.0.0.0:8080"]
