#!/usr/bin/env python3
"""A client written only from docs/protocol.md, with nothing but Python's standard library.

Usage: protocol_client.py AGENT_BINARY
Starts the agent on a private socket, creates a network namespace, and checks pipelined
requests, out-of-order replies, error frames, and a namespace passed as an fd (SCM_RIGHTS).
Prints 'N passed, N failed' and exits non-zero on any failure. Bounded: every read has a timeout.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", file=sys.stderr)


class Client:
    """NDJSON over a Unix socket; reads with recvmsg and tracks fds by stream position."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self.base = 0            # stream offset of buf[0]
        self.batches = []        # (read_begin, read_end, [fds])

    def send(self, obj, fds=()):
        data = (json.dumps(obj) + "\n").encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))  # alone, in one sendmsg
        else:
            self.sock.sendall(data)

    def frame(self):
        while b"\n" not in self.buf:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 16)
            if not data:
                raise EOFError("agent closed the connection")
            begin = self.base + len(self.buf)
            self.buf += data
            if fds:
                self.batches.append((begin, begin + len(data), fds))
        line, rest = self.buf.split(b"\n", 1)
        start, stop = self.base, self.base + len(line) + 1
        self.base, self.buf = stop, rest
        # The fds of one read belong to the last line that starts inside that read.
        mine = []
        while self.batches and self.batches[0][0] <= start and stop >= self.batches[0][1]:
            mine += self.batches.pop(0)[2]
        return json.loads(line), mine


def main():
    agent = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="nsat-py-")
    sock_path = os.path.join(tmp, "a.sock")
    ns = f"nsat-py-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    cfg = os.path.join(tmp, "config.json")
    with open(cfg, "w") as f:
        f.write("{}")
    proc = subprocess.Popen([agent, "--socket", sock_path, "--config", cfg],
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if os.path.exists(sock_path):
                break
            time.sleep(0.01)
        c = Client(sock_path)
        sel = {"type": "net", "name": ns}

        c.send({"id": 1, "op": "agent.hello"})
        hello, _ = c.frame()
        check("hello", hello.get("ok") and hello["result"]["protocol"] == 1, hello)

        # Pipelined: a slow op on one namespace, then quick ones; replies come by id.
        c.send({"id": "slow", "op": "test.sleep", "ns": sel, "args": {"ms": 300}})
        c.send({"id": "fast", "op": "agent.ping"})
        c.send({"id": "bad", "op": "agent.ping", "timeout_ms": -1})
        c.send({"id": "nope", "op": "no.such.op"})
        got = {}
        for _ in range(4):
            f, _ = c.frame()
            got[f["id"]] = f
        order = list(got)
        check("out of order", order[-1] == "slow", order)
        check("fast ok", got["fast"]["ok"] and got["fast"]["result"] == {"pong": True}, got["fast"])
        check("bad_request", got["bad"]["error"]["code"] == "bad_request", got["bad"])
        check("unknown_op", got["nope"]["error"]["code"] == "unknown_op", got["nope"])

        # ns.ping by name, then by a passed namespace fd: the same worker.
        c.send({"id": 10, "op": "ns.ping", "ns": sel})
        by_name, _ = c.frame()
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        c.send({"id": 11, "op": "ns.ping", "ns": {"type": "net", "fd": 0}, "fds": 1}, [fd])
        os.close(fd)
        by_fd, _ = c.frame()
        ino = str(os.stat(f"/run/netns/{ns}").st_ino)
        check("ino is a decimal string", by_name["result"]["ino"] == ino, by_name)
        check("same worker by fd", by_fd["result"]["tid"] == by_name["result"]["tid"], (by_name, by_fd))

        # Missing namespace: an os-level cause with its name.
        c.send({"id": 12, "op": "ns.ping", "ns": {"type": "net", "name": ns + "-missing"}})
        nf, _ = c.frame()
        check("ns_not_found", nf["error"]["code"] == "ns_not_found" and "ENOENT" in nf["error"]["message"], nf)
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        check("exit 0 on SIGTERM", rc == 0, rc)
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["rm", "-rf", tmp])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
