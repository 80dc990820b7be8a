#!/usr/bin/env bash
# The checks that need a GPU, as one script for a machine that has one (the `device` tool's
# `run`): build with CUDA forced on, run the CPU-vs-CUDA equality tests and the thread audit,
# then pktbench's CPU and CUDA rows. Output goes to $OUT (default ./gpu-check) for RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
nvidia-smi -L > "$out/gpu.txt" 2>&1 || true
.ci/setup > "$out/setup.log" 2>&1
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNSAGENT_CUDA=ON > "$out/cmake.log" 2>&1
cmake --build build-gpu -j"$(nproc)" --target nsagent_tests nsagentd-test nsctl pktbench > "$out/build.log" 2>&1
build-gpu/tests/nsagent_tests --gtest_filter='CudaEngine.*:Pkt.*:Nsctl.Doctor*' 2>&1 | tee "$out/tests.txt"
build-gpu/pktbench --rounds 5 2>&1 | tee "$out/pktbench.txt"
# MemoryDenyWriteExecute=yes (the unit sets it) under the CUDA runtime: the same restriction
# through prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+), which systemd also uses
# where it can, then the CUDA rows again. A failure here means the unit must drop that line.
python3 -c 'import ctypes,os,sys
if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0: sys.exit("PR_SET_MDWE unavailable on this kernel")
os.execv("build-gpu/pktbench", ["pktbench", "--rounds", "1", "--packets", "65536"])' 2>&1 | tee "$out/mdwe.txt"
