#!/usr/bin/env python3
"""Throughput of `nsctl net forward` against a direct loopback connection, in the same run.

Usage (as root, after building): bench/forward_throughput.py [BUILD_DIR] [--rounds N] [--mib M]

Starts nsagentd on a private socket, a network namespace with an echo server on its loopback,
the same echo server on the host's loopback, and `nsctl net forward` into the namespace. Each
round sends M MiB through the forward and M MiB directly (interleaved A B A B, so machine drift
hits both alike), echoed back, and times the round trip of the whole payload. Prints the median
MiB/s of each path and their ratio. Traffic stays on loopback. Every loop is bounded.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ECHO = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
def h(c):
    while True:
        d = c.recv(1 << 16)
        if not d: break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR); c.close()
s.settimeout(600)
while True:
    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()
"""


def round_trip(port, payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    got = [0]

    def reader():
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            got[0] += len(d)

    t0 = time.perf_counter()
    th = threading.Thread(target=reader)
    th.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    th.join(timeout=120)
    dt = time.perf_counter() - t0
    s.close()
    assert got[0] == len(payload), (got[0], len(payload))
    return len(payload) * 2 / dt / (1 << 20)  # MiB/s, both directions counted


def main():
    args = sys.argv[1:]
    build = args[0] if args and not args[0].startswith("--") else "build"
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 5
    mib = int(args[args.index("--mib") + 1]) if "--mib" in args else 64
    tmp = tempfile.mkdtemp(prefix="nsat-bench-")
    sock = os.path.join(tmp, "a.sock")
    ns = f"nsat-bench-{os.getpid()}"
    procs = []
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    try:
        agent = subprocess.Popen([f"{build}/nsagentd", "--socket", sock], stderr=subprocess.DEVNULL)
        procs.append(agent)
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        inner = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", ECHO], stdout=subprocess.PIPE, text=True)
        outer = subprocess.Popen(["python3", "-c", ECHO], stdout=subprocess.PIPE, text=True)
        procs += [inner, outer]
        inner_port = int(inner.stdout.readline())
        direct_port = int(outer.stdout.readline())
        fwd = subprocess.Popen([f"{build}/nsctl", "--socket", sock, "net", "forward", ns, "--to", f"127.0.0.1:{inner_port}"],
                               stdout=subprocess.PIPE, text=True)
        procs.append(fwd)
        fwd_port = int(fwd.stdout.readline().split()[1].rsplit(":", 1)[1])

        payload = os.urandom(mib << 20)
        forward, direct = [], []
        for _ in range(rounds):
            forward.append(round_trip(fwd_port, payload))
            direct.append(round_trip(direct_port, payload))
        f, d = statistics.median(forward), statistics.median(direct)
        spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) * 100
        print(f"payload {mib} MiB each way, {rounds} interleaved rounds, medians:")
        print(f"  direct loopback        {d:8.0f} MiB/s  (spread {spread(direct):.0f}%)")
        print(f"  nsctl net forward      {f:8.0f} MiB/s  (spread {spread(forward):.0f}%)")
        print(f"  forward / direct       {f / d:8.2f}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
