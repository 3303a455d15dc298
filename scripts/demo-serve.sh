#!/usr/bin/env bash
# demo-serve.sh shows the node as a service: it starts `accelnode serve` on a
# loopback port with a fresh data directory, then, through the CLI's client
# verbs, uploads a model in chunks, runs a job that uses it, runs an
# inference through the Open Inference Protocol; then the seed application
# (examples/secure-ml) runs a sealed t-SNE job and split learning through an
# actor, checking every receipt; then the server stops with SIGTERM.
#
#   scripts/demo-serve.sh [BIN]     BIN holds accelnode, secure-ml, examples/, mlp.onnx
#                                   and mnist-weights.ant (default bin)
set -euo pipefail

bin=${1:-bin}
data=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT

"$bin/accelnode" serve --data "$data" --listen 127.0.0.1:0 --log-format text --model mnist="$bin/mnist.onnx" 2>"$data/serve.log" &
server=$!
url=
for _ in $(seq 100); do
	url=$(grep -o 'url=http://[0-9.:]*' "$data/serve.log" | head -n 1 | cut -d= -f2 || true)
	[[ -n $url ]] && break
	if ! kill -0 $server 2>/dev/null; then
		cat "$data/serve.log" >&2
		exit 1
	fi
	sleep 0.1
done
[[ -n $url ]] || { echo "demo-serve: the server did not start" >&2; cat "$data/serve.log" >&2; exit 1; }
export ACCELNODE_NODE=$url
echo "== accelnode serve is listening on $url (data in $data)"

set -x
"$bin/accelnode" upload mlp "$bin/mlp.onnx"
"$bin/accelnode" models
"$bin/accelnode" submit --wait "$bin/examples/mlp.wasm" -- -batch 16
"$bin/accelnode" infer mlp
curl -fsS "$url/metrics" 2>/dev/null | grep -E '^accelnode_jobs_total' || true
"$bin/secure-ml" -node "$url" -examples "$bin/examples" -weights "$bin/mnist-weights.ant" -n 1000 -rounds 20
{ set +x; } 2>/dev/null
echo "== the web page (t-SNE, digits, split learning) is at $url/ while this node runs."
echo "   To keep one running: $bin/accelnode serve --model mnist=$bin/mnist.onnx, then open http://127.0.0.1:8080/"

kill -TERM $server
wait $server
echo "== the server stopped; its log:"
cat "$data/serve.log"
