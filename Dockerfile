# Builds both binaries: the worker (llama.cpp through cgo) and the SSE bridge.
#   docker build -t llmworker .
# llama.cpp is compiled for the CPU level of the machine that builds the
# image (x86-64-v2, -v3 or -v4, as `make build` picks it); for other
# machines name theirs:
#   docker build --build-arg CPU=x86-64-v3 -t llmworker .
# The worker refuses, with a line naming what is missing, to start on a CPU
# below that level.
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
ARG CPU
RUN make build ${CPU:+CPU=$CPU}

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
