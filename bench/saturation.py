#!/usr/bin/env python3
"""Queue-wait under a saturated worker: one client keeps 32 net.links requests in flight on one
namespace for a few seconds while another pings three other namespaces; agent.stats then gives
each worker's queue-wait p99 (histogram bucket bounds), and the pinger's own round trips are
compared with an idle baseline measured in the same run.

Usage (as root, after building): bench/saturation.py [BUILD_DIR] [--seconds S]
Traffic never leaves the agent's Unix socket; every loop is bounded by count and time.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s, s.makefile("rb")


def rtts(path, names, seconds, limit=20000):
    s, f = connect(path)
    out = []
    end = time.time() + seconds
    i = 0
    while time.time() < end and i < limit:
        ns = {"type": "net", "name": names[i % len(names)]}
        t0 = time.perf_counter()
        s.sendall((json.dumps({"id": i, "op": "ns.ping", "ns": ns}) + "\n").encode())
        reply = json.loads(f.readline())
        out.append((time.perf_counter() - t0) * 1e6)
        assert reply["ok"], reply
        i += 1
        time.sleep(0.002)
    s.close()
    return out


def saturate(path, name, seconds, depth=32, limit=2_000_000):
    s, f = connect(path)
    ns = {"type": "net", "name": name}
    sent = got = 0
    end = time.time() + seconds
    while sent < depth:
        s.sendall((json.dumps({"id": sent, "op": "net.links", "ns": ns}) + "\n").encode())
        sent += 1
    while got < sent and got < limit:
        f.readline()
        got += 1
        if time.time() < end:
            s.sendall((json.dumps({"id": sent, "op": "net.links", "ns": ns}) + "\n").encode())
            sent += 1
    s.close()
    return got


def main():
    args = sys.argv[1:]
    build = args[0] if args and not args[0].startswith("--") else "build"
    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 5
    tmp = tempfile.mkdtemp(prefix="nsat-sat-")
    sock = os.path.join(tmp, "a.sock")
    names = [f"nsat-sat-{os.getpid()}-{i}" for i in range(4)]
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    agent = subprocess.Popen([f"{build}/nsagentd", "--socket", sock], stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        hot, quiet = names[0], names[1:]
        idle = rtts(sock, quiet, seconds / 2)
        result = {}
        th = threading.Thread(target=lambda: result.update(ops=saturate(sock, hot, seconds)))
        th.start()
        time.sleep(0.2)
        busy = rtts(sock, quiet, seconds - 0.4)
        th.join()
        s, f = connect(sock)
        s.sendall(b'{"id":1,"op":"agent.stats"}\n')
        stats = json.loads(f.readline())["result"]
        inos = {n: str(os.stat(f"/run/netns/{n}").st_ino) for n in names}
        print(f"one worker saturated with net.links (32 in flight, {result['ops'] / seconds:.0f} ops/s), "
              f"{seconds:.0f} s; quiet namespaces pinged every 2 ms")
        print(f"  {'worker':30s} {'ops':>8s} {'queue-wait p50':>15s} {'queue-wait p99':>15s}")
        for n in names:
            w = next(w for w in stats["workers"] if w["ns"]["ino"] == inos[n])
            print(f"  {('saturated ' if n == hot else 'quiet ') + n[-1]:30s} {w['ops']:8d} "
                  f"{'<=' + str(w['queue_wait_ms']['p50']) + ' ms':>15s} {'<=' + str(w['queue_wait_ms']['p99']) + ' ms':>15s}")
        q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
        print(f"  quiet ns.ping round trip, idle:      p50 {statistics.median(idle):7.0f} us  p99 {q(idle, 0.99):7.0f} us")
        print(f"  quiet ns.ping round trip, saturated: p50 {statistics.median(busy):7.0f} us  p99 {q(busy, 0.99):7.0f} us")
    finally:
        agent.terminate()
        agent.wait(timeout=20)
        for n in names:
            subprocess.run(["ip", "netns", "del", n])
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
