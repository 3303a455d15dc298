# The accelnode node as a service: `accelnode serve` on port 8080, its data in
# the /data volume. linux/amd64 only: scripts/fetch-onnxruntime.sh fetches
# ONNX Runtime for linux/x64.
#
#   docker build -t accelnode .
#   docker run --rm --gpus all -p 8080:8080 -v accelnode-data:/data accelnode --allow-public
#
# internal/layout/dockerfile_test.go checks this file against the Makefile
# and go.mod.

# Build: `make build`, as on a development machine. npm fetches ONNX Runtime
# (the npm package onnxruntime-node, integrity-checked); openssl checks it.
FROM golang:1.26.8-bookworm AS build
RUN apt-get update \
	&& apt-get install -y --no-install-recommends npm openssl \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

# Runtime: the same Debian release as the build stage, so the binary finds
# the glibc it was linked against; ONNX Runtime needs libstdc++.
FROM debian:bookworm-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 accelnode \
	&& useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
		--shell /usr/sbin/nologin accelnode \
	&& mkdir -p /data \
	&& chown 10001:10001 /data \
	&& chmod 700 /data

# bench.wasm lies beside the binary, where `accelnode bench` looks for it.
# The example guests and model are for `accelnode run`, e.g.
#   docker run --rm --gpus all --entrypoint accelnode accelnode run /usr/local/share/accelnode/examples/matmul.wasm
COPY --from=build /src/bin/accelnode /src/bin/bench.wasm /usr/local/bin/
COPY --from=build /src/bin/examples/*.wasm /usr/local/share/accelnode/examples/
COPY --from=build /src/bin/mlp.onnx /usr/local/share/accelnode/
COPY --from=build /src/.deps/libonnxruntime.so.1 /usr/local/lib/accelnode/
ENV ONNXRUNTIME_SHARED_LIBRARY_PATH=/usr/local/lib/accelnode/libonnxruntime.so.1

# GPUs: with --gpus all, the NVIDIA container toolkit mounts the driver
# (libcuda, nvidia-smi). The CUDA user-space libraries the cuda backend loads
# at run time (cuBLAS, NVRTC, cuDNN) are NOT in this image. Mount them: a
# CUDA toolkit at /usr/local/cuda is found as it is
#   -v /usr/local/cuda:/usr/local/cuda:ro
# and other directories are named in ACCELNODE_CUDA_PATH (colon-separated,
# searched first), e.g. for cuDNN
#   -v /opt/cudnn:/opt/cudnn:ro -e ACCELNODE_CUDA_PATH=/opt/cudnn/lib
# Or build the runtime stage FROM an nvidia/cuda *-cudnn-runtime-ubuntu24.04
# image (its glibc is newer than bookworm's), where they are on the loader's
# path. Without them the cuda backend reports itself unavailable, with the
# reason, and the node serves on the CPU (`accelnode backends` says which).
ENV NVIDIA_VISIBLE_DEVICES=all \
	NVIDIA_DRIVER_CAPABILITIES=compute,utility

# A public address without TLS and API keys is refused unless --allow-public
# is passed. Add keys with
#   docker run --rm -v accelnode-data:/data --entrypoint accelnode accelnode keys add NAME
# and TLS with a mounted certificate: --tls-cert /certs/cert.pem --tls-key /certs/key.pem.
# Health: GET /livez and /readyz (there is no curl here for a HEALTHCHECK).
# On SIGTERM running jobs get --grace (30s) to finish; give `docker stop` as
# long (--stop-timeout 40), or they run again at the next start.
ENV ACCELNODE_DATA=/data \
	ACCELNODE_CACHE_DIR=/data/cache \
	ACCELNODE_LISTEN=0.0.0.0:8080
USER 10001:10001
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/accelnode", "serve"]
