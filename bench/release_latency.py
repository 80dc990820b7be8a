#!/usr/bin/env python3
"""How soon the agent lets go of a deleted namespace: a namespace with a veth whose peer is in
the host is served through the agent, then deleted (`ip netns del`, or its holder process
killed); the time until the host-side peer disappears is the time until nothing pins it.

Usage (as root, after building): bench/release_latency.py [BUILD_DIR] [--rounds N]
Prints the median and max over N rounds for name and pid anchors. No traffic at all.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def wait_gone(name, limit=10.0):
    t0 = time.perf_counter()
    while link_exists(name):
        if time.perf_counter() - t0 > limit:
            return None
        time.sleep(0.001)
    return (time.perf_counter() - t0) * 1e3


def main():
    args = sys.argv[1:]
    build = args[0] if args and not args[0].startswith("--") else "build"
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 10
    tmp = tempfile.mkdtemp(prefix="nsat-rel-")
    sock = os.path.join(tmp, "a.sock")
    agent = subprocess.Popen([f"{build}/nsagentd", "--socket", sock], stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        f = s.makefile("rb")

        def ping(ns):
            s.sendall((json.dumps({"id": 1, "op": "ns.ping", "ns": ns}) + "\n").encode())
            assert json.loads(f.readline())["ok"]

        by_name, by_pid = [], []
        for i in range(rounds):
            n, peer = f"nsat-rel-{os.getpid()}-{i}", f"nsatr{os.getpid() % 10000}x{i}"
            subprocess.run(["ip", "netns", "add", n], check=True)
            subprocess.run(["ip", "-n", n, "link", "add", "c0", "type", "veth", "peer", "name", peer,
                            "netns", str(os.getpid())], check=True)
            ping({"type": "net", "name": n})
            subprocess.run(["ip", "netns", "del", n], check=True)
            by_name.append(wait_gone(peer))

            holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
            time.sleep(0.05)
            peer = f"nsatr{os.getpid() % 10000}y{i}"
            subprocess.run(["ip", "link", "add", peer, "type", "veth", "peer", "name", "c0", "netns", str(holder.pid)], check=True)
            ping({"type": "net", "pid": holder.pid})
            holder.kill()
            holder.wait()
            by_pid.append(wait_gone(peer))
        for label, xs in (("ip netns del (name anchor)", by_name), ("holder killed (pid anchor)", by_pid)):
            ok = [x for x in xs if x is not None]
            print(f"  {label:28s} median {statistics.median(ok):6.1f} ms  max {max(ok):6.1f} ms  "
                  f"({len(ok)}/{len(xs)} released within 10 s)")
    finally:
        agent.terminate()
        agent.wait(timeout=20)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
