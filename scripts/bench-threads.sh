#!/usr/bin/env bash
# Runs BenchmarkCrowded (internal/runtime): one busy model while three idle
# ones are loaded, with every session holding a pool of every CPU and ONNX
# Runtime's default spinning ("before"), and with the CPUs divided among
# the sessions ("after"). Writes bench/THREADS.md naming the machine and
# the command. `make bench` runs it; `make bench-threads` runs it alone.
set -euo pipefail
out=${1:-bench/THREADS.md}
benchtime=${BENCH_THREADS_TIME:-3s}
count=${BENCH_THREADS_COUNT:-3}
cmd=(go test -run '^$' -bench '^BenchmarkCrowded$' -benchtime "$benchtime" -count "$count" ./internal/runtime/)
result=$("${cmd[@]}")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
	echo "# One busy model among four loaded: ONNX Runtime threads before and after the division"
	echo
	echo "Recorded $(date -u +%Y-%m-%d) on ${cpu:-an unknown CPU}, $(nproc) CPUs available to the process,"
	echo "ONNX Runtime from \`${ONNXRUNTIME_LIB:-the default library}\`, with:"
	echo
	echo '```'
	echo "make bench-threads   # ${cmd[*]}"
	echo '```'
	echo
	echo "Four sessions of a 4-layer 512-wide MatMul+ReLU model are loaded and run once;"
	echo "one of them then runs batches of 16 rows back to back. \"before\": every session"
	echo "has an intra-op pool of every available CPU and spins (the server's former"
	echo "default); \"after\": \`runtime.ThreadBudget\` divides the CPUs among the four"
	echo "sessions (one thread each below four CPUs each, and spinning off when"
	echo "sessions outnumber the CPUs). The machine is shared, so compare the two rows"
	echo "of one run rather than runs on different days."
	echo
	echo '```'
	echo "$result"
	echo '```'
} >"$out"
echo "wrote $out"
