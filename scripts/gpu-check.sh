#!/usr/bin/env bash
# gpu-check.sh verifies the cuda backend on a machine with an NVIDIA GPU.
#
#   scripts/gpu-check.sh build [DIR]   on any machine with Go: cross-build the
#                                      test and benchmark binaries into DIR
#   scripts/gpu-check.sh run [DIR]     on the GPU machine (no Go needed): run
#                                      them and print a short report
#   scripts/gpu-check.sh [DIR]         both, where Go and the GPU are on one machine
#
# DIR defaults to .gpu-check. The run writes full logs to DIR/logs. Set
# ACCELNODE_CUDA_PATH where the CUDA libraries are in no standard place,
# ONNXRUNTIME_SHARED_LIBRARY_PATH to include ONNX Runtime in the bench sweep,
# QUICK=1 for a shorter benchmark pass, SWEEP_TIME and SWEEP_MAX_RUN for the
# sweep's budgets (docs/benchmarks.md used 250ms and 4s), and SKIP_BENCH=1
# for the checks alone.
set -euo pipefail

cmd=${1:-all}
case $cmd in
build | run | all) shift || true ;;
*) cmd=all ;;
esac
dir=${1:-.gpu-check}

build() {
	mkdir -p "$dir/guests"
	export GOOS=linux GOARCH=amd64
	go test -c -o "$dir/cuda.test" ./accel/cuda
	go test -c -o "$dir/strictcpu.test" ./accel/internal/strictcpu
	go test -c -o "$dir/ref.test" ./accel/ref
	go test -c -o "$dir/hostfn.test" ./hostfn
	go build -buildvcs=auto -o "$dir/accelnode" ./cmd/node
	GOOS=wasip1 GOARCH=wasm go build -o "$dir/bench.wasm" ./bench/guest
	GOOS=wasip1 GOARCH=wasm go build -o "$dir/guests/resident.wasm" ./hostfn/testdata/guests/resident
	echo "built into $dir; copy it to the GPU machine and run: scripts/gpu-check.sh run $dir"
}

run() {
	local logs="$dir/logs" bt=${BENCHTIME:-20x}
	mkdir -p "$logs"
	export ACCELNODE_TEST_GUESTS=$dir/guests
	if [[ ${QUICK:-0} == 1 ]]; then bt=5x; fi

	echo "== GPU"
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 || echo "nvidia-smi unavailable"
	echo "== backends (each lists the modes it serves; cuda serves strict, fast and checked)"
	"$dir/accelnode" backends

	echo "== tests (conformance in every mode, bit-identity with ref, faults, memory)"
	local status=0
	(cd "$dir" && ./cuda.test -test.v -test.count=1 -test.timeout=20m) >"$logs/tests.log" 2>&1 || status=$?
	grep -E '^(--- FAIL|FAIL|ok|PASS)' "$logs/tests.log" | sort | uniq -c | sort -rn | head -20
	grep -E '^--- (PASS|FAIL|SKIP)' "$logs/tests.log" | awk '{print $2}' | sort | uniq -c
	if ((status != 0)); then
		echo "tests FAILED (exit $status); first failures:"
		grep -B2 -A12 -E '^\s*--- FAIL' "$logs/tests.log" | head -80
	fi

	echo "== conformance corpus: cuda against ref, strict (must be bit-identical) and fast"
	"$dir/accelnode" conformance --determinism strict --backends ref,cuda >"$logs/conformance-strict.log" 2>&1 || {
		status=1
		echo "strict conformance FAILED"
	}
	"$dir/accelnode" conformance --determinism fast --backends ref,cuda >"$logs/conformance-fast.log" 2>&1 || echo "fast conformance run failed"
	tail -n 12 "$logs/conformance-strict.log" "$logs/conformance-fast.log"

	echo "== the CPU's strict kernels at every level this CPU has (AVX-512 where present), and ref's conformance"
	(cd "$dir" && ./strictcpu.test -test.count=1 && ./ref.test -test.count=1) >"$logs/ref.log" 2>&1 || {
		status=1
		echo "ref tests FAILED"
	}
	tail -n 3 "$logs/ref.log"

	if [[ ${SKIP_BENCH:-0} == 1 ]]; then
		return $status
	fi
	echo "== benchmarks (each op waits for the GPU; medians in the logs)"
	(cd "$dir" && ./cuda.test -test.run '^$' -test.bench 'MatMul|CublasDirect|TSNEStep|Conv2D' -test.benchtime "$bt" -test.count 3) \
		>"$logs/bench-cuda.log" 2>&1 || echo "cuda benchmarks failed (see $logs/bench-cuda.log)"
	# The cuda backend reads no environment: cuda.test and accelnode pass
	# ACCELNODE_CUDA_PATH to it themselves; for this benchmark the dynamic
	# loader's path carries it.
	for mode in strict fast; do
		LD_LIBRARY_PATH=${ACCELNODE_CUDA_PATH:+$ACCELNODE_CUDA_PATH${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-} \
			ACCELNODE_BENCH_BACKEND=cuda ACCELNODE_DETERMINISM=$mode ACCELNODE_BENCH_SIZES=${RESIDENT_SIZES:-1024,4096} \
			"$dir/hostfn.test" -test.run '^$' -test.bench 'ResidentMatMul' -test.benchtime 3x -test.count 3 \
			>"$logs/bench-resident-$mode.log" 2>&1 || echo "resident benchmark ($mode) failed (see $logs/bench-resident-$mode.log)"
	done
	echo "== accelnode bench: every backend here, both modes (report in $logs/bench.json, chart in $logs/bench.svg)"
	"$dir/accelnode" bench --time "${SWEEP_TIME:-1s}" --max-run "${SWEEP_MAX_RUN:-10s}" \
		--format json --plot "$logs/bench.svg" >"$logs/bench.json" 2>"$logs/bench.err" ||
		echo "bench sweep failed (see $logs/bench.err)"
	"$dir/accelnode" bench --from "$logs/bench.json" >"$logs/bench.txt" 2>&1 && head -n 4 "$logs/bench.txt"
	cat "$logs"/bench-*.log | grep -E '^Benchmark' | awk '{
		line = $1; for (i = 3; i < NF; i += 2) if ($(i+1) != "ns/op") line = line "  " $i " " $(i+1); print line }'
	return $status
}

case $cmd in
build) build ;;
run) run ;;
all) build && run ;;
esac
