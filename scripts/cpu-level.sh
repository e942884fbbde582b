#!/usr/bin/env sh
# Prints the x86-64 micro-architecture level of this machine's CPU
# (x86-64-v2, -v3 or -v4, as GCC's -march names them), read from
# /proc/cpuinfo: the level `make build` compiles llama.cpp for.
# internal/cpulevel checks the same features when a binary starts (LZCNT
# too, which some virtual machines leave out of /proc/cpuinfo).
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() {
	for f in "$@"; do
		case "$flags" in *" $f "*) ;; *) return 1 ;; esac
	done
}
if has avx512f avx512bw avx512cd avx512dq avx512vl avx2 bmi1 bmi2 f16c fma movbe; then
	echo x86-64-v4
elif has avx avx2 bmi1 bmi2 f16c fma movbe; then
	echo x86-64-v3
elif has pni ssse3 sse4_1 sse4_2 popcnt cx16; then
	echo x86-64-v2
else
	echo x86-64
fi
