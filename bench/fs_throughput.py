#!/usr/bin/env python3
"""Writing 64 MiB into a mount namespace: fs.open (the file as an fd) and fs.write (base64 in
512 KiB pieces) against a direct write of the same file from the host through /proc/PID/root, in
the same run.

Usage (as root, after building): bench/fs_throughput.py [BUILD_DIR] [--rounds N] [--mib M]
Interleaved rounds (A B C A B C), medians, MiB/s. Everything stays on this machine; every loop is
bounded.
"""
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(path)
        self.buf = b""
        self.fds = []
        self.n = 0

    def call(self, op, ns, args):
        self.n += 1
        self.s.sendall((json.dumps({"id": self.n, "op": op, "ns": ns, "args": args}) + "\n").encode())
        while b"\n" not in self.buf:
            data, fds, _, _ = socket.recv_fds(self.s, 1 << 16, 4)
            if not data:
                raise EOFError
            self.buf += data
            self.fds += fds
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        fds, self.fds = self.fds[: reply.get("fds", 0)], self.fds[reply.get("fds", 0):]
        if not reply.get("ok"):
            raise RuntimeError(reply)
        return reply["result"], fds


def main():
    args = sys.argv[1:]
    build = args[0] if args and not args[0].startswith("--") else "build"
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 5
    mib = int(args[args.index("--mib") + 1]) if "--mib" in args else 64
    tmp = tempfile.mkdtemp(prefix="nsat-fsbench-")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    sock = os.path.join(tmp, "a.sock")
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               f"mount -t tmpfs -o size={4 * mib}m b {mnt} && echo ready && exec sleep 600"],
                              stdout=subprocess.PIPE, text=True)
    agent = None
    try:
        assert holder.stdout.readline().strip() == "ready"
        agent = subprocess.Popen([f"{build}/nsagentd", "--socket", sock], stderr=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        c = Client(sock)
        ns = {"type": "mnt", "pid": holder.pid}
        payload = os.urandom(mib << 20)
        piece = 512 << 10  # base64 of it stays under max_request_bytes (1 MiB)
        target = mnt + "/bench"

        def via_open():
            _, fds = c.call("fs.open", ns, {"path": target, "flags": "w", "create": True})
            with os.fdopen(fds[0], "wb", buffering=0) as f:
                view = memoryview(payload)
                while view:
                    view = view[f.write(view):]

        def via_write():
            for off in range(0, len(payload), piece):
                c.call("fs.write", ns, {"path": target, "offset": off, "atomic": False,
                                        "data_b64": base64.b64encode(payload[off:off + piece]).decode()})

        def direct():
            with open(f"/proc/{holder.pid}/root{target}", "wb", buffering=0) as f:
                view = memoryview(payload)
                while view:
                    view = view[f.write(view):]

        rows = {"direct write (host, /proc/PID/root)": direct, "fs.open fd": via_open, "fs.write base64, 512 KiB pieces": via_write}
        results = {k: [] for k in rows}
        for _ in range(rounds):
            for name, fn in rows.items():
                t0 = time.perf_counter()
                fn()
                results[name].append(mib / (time.perf_counter() - t0))
        base = statistics.median(results["direct write (host, /proc/PID/root)"])
        print(f"{mib} MiB into a tmpfs in a private mount namespace, {rounds} interleaved rounds, medians:")
        for name, xs in results.items():
            m = statistics.median(xs)
            spread = (max(xs) - min(xs)) / m * 100
            print(f"  {name:38s} {m:8.0f} MiB/s  ratio {m / base:5.2f}  (spread {spread:.0f}%)")
    finally:
        if agent:
            agent.terminate()
            agent.wait(timeout=20)
        holder.kill()
        holder.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
