#!/usr/bin/env python3
"""Soak: 16 clients doing mixed ops over 50 network namespaces that are deleted and re-created
while they run, with random disconnects (some with requests still in flight), bound
connections and pipelined bursts. Every reply is checked: one well-formed frame per request,
ok or an expected error code. After the load stops and idle workers retire, the agent's fds,
threads and workers must be back exactly at their start values, and RSS within a tolerance
(glibc keeps per-thread arenas).

Usage (as root, after building): bench/soak.py [--agent build/nsagentd] [--seconds 60]
                                               [--clients 16] [--namespaces 50]
Exit status 0 if every check held. Traffic never leaves the agent's Unix socket; every loop is
bounded by time and by count.
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

RSS_TOLERANCE_KIB = 16 * 1024
EXPECTED_ERRORS = {"ns_not_found"}  # a namespace deleted under the client


class Failures:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, what):
        with self.lock:
            if len(self.items) < 50:
                self.items.append(what)


def proc_state(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"fds": fds, "threads": threads, "rss_kib": rss}


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(15)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def send(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())

    def read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("the agent closed the connection")
        return json.loads(line)

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


def check(reply, want_ids, failures, where, also_ok=()):
    if not isinstance(reply, dict) or "id" not in reply or "ok" not in reply:
        failures.add(f"{where}: malformed frame {reply!r}")
        return False
    if reply["id"] not in want_ids:
        failures.add(f"{where}: reply to an id never sent or answered twice: {reply!r}")
        return False
    want_ids.discard(reply["id"])
    if not reply["ok"] and reply["error"]["code"] not in EXPECTED_ERRORS and reply["error"]["code"] not in also_ok:
        failures.add(f"{where}: unexpected error {reply['error']}")
    return True


def client(idx, path, names, deadline, failures, counts):
    rnd = random.Random(idx)
    next_id = 0
    conn = Conn(path)
    try:
        for _ in range(10_000_000):
            if time.time() >= deadline:
                break
            name = rnd.choice(names)
            ns = {"type": "net", "name": name}
            kind = rnd.random()
            try:
                if kind < 0.05:  # vanish with requests in flight
                    for _ in range(3):
                        next_id += 1
                        conn.send({"id": next_id, "op": "net.links", "ns": ns})
                    conn.close()
                    conn = Conn(path)
                    counts["disconnects"] += 1
                    continue
                if kind < 0.10:  # a bound connection, a few calls, then gone
                    b = Conn(path)
                    b.send({"id": "bind", "op": "agent.bind", "ns": ns})
                    r = b.read()
                    if r.get("ok"):
                        want = set(range(5))
                        try:
                            for k in range(5):
                                b.send({"id": k, "op": "ns.ping"})
                            for _ in range(5):
                                # its namespace deleted: the worker stops, the rest is shutting_down
                                check(b.read(), want, failures, "bound", ("shutting_down",))
                        except (EOFError, BrokenPipeError, ConnectionResetError):
                            counts["bound_closed"] += 1  # its namespace went away: the connection closed
                        counts["requests"] += 5
                    elif r.get("error", {}).get("code") not in EXPECTED_ERRORS:
                        failures.add(f"bind: {r}")
                    b.close()
                    counts["binds"] += 1
                    continue
                # a pipelined burst of mixed ops on the long-lived connection
                want = set()
                for _ in range(rnd.randint(1, 8)):
                    next_id += 1
                    op = rnd.choice(["ns.ping", "net.links", "net.sysctl_get", "agent.ping"])
                    req = {"id": next_id, "op": op}
                    if op != "agent.ping":
                        req["ns"] = {"type": "net", "name": rnd.choice(names)}
                    if op == "net.sysctl_get":
                        req["args"] = {"name": "net.ipv4.ip_forward"}
                    conn.send(req)
                    want.add(next_id)
                n = len(want)
                for _ in range(n):
                    check(conn.read(), want, failures, f"client {idx}")
                if want:
                    failures.add(f"client {idx}: no reply to {sorted(want)}")
                counts["requests"] += n
            except (OSError, EOFError, ValueError) as e:
                failures.add(f"client {idx}: {type(e).__name__}: {e}")
                conn.close()
                conn = Conn(path)
    finally:
        conn.close()


def churn(names, deadline, stop, counts):
    rnd = random.Random(99)
    while time.time() < deadline and not stop.is_set():
        name = rnd.choice(names)
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", name], stderr=subprocess.DEVNULL)
        counts["recreated"] += 1
        stop.wait(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", default="build/nsagentd")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--namespaces", type=int, default=50)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak.py: run as root (it creates namespaces)")

    tmp = tempfile.mkdtemp(prefix="nsat-soak-")
    sock = os.path.join(tmp, "agent.sock")
    cfg = os.path.join(tmp, "agent.json")
    with open(cfg, "w") as f:
        json.dump({"idle_timeout_s": 1, "queue_depth": 256, "audit": "off"}, f)
    names = [f"nsb-{os.getpid()}-{i}" for i in range(a.namespaces)]
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    agent = subprocess.Popen([a.agent, "--socket", sock, "--config", cfg], stderr=subprocess.DEVNULL)
    failures = Failures()
    counts = {"requests": 0, "disconnects": 0, "binds": 0, "bound_closed": 0, "recreated": 0}
    try:
        for _ in range(500):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        time.sleep(0.2)
        start = proc_state(agent.pid)
        deadline = time.time() + a.seconds
        stop = threading.Event()
        ch = threading.Thread(target=churn, args=(names, deadline, stop, counts))
        ch.start()
        ts = [threading.Thread(target=client, args=(i, sock, names, deadline, failures, counts))
              for i in range(a.clients)]
        for t in ts:
            t.start()
        peak = start
        while any(t.is_alive() for t in ts):
            time.sleep(1)
            s = proc_state(agent.pid)
            peak = {k: max(peak[k], s[k]) for k in s}
        for t in ts:
            t.join()
        stop.set()
        ch.join()
        # Load is over: wait (bounded) for idle workers to retire and counts to settle.
        probe = Conn(sock)
        end, workers = None, None
        for _ in range(100):
            probe.send({"id": 1, "op": "agent.stats"})
            st = probe.read()["result"]
            workers = len(st["workers"])
            end = proc_state(agent.pid)
            # the probe's own connection is one fd more than at the start
            if workers == 0 and end["fds"] == start["fds"] + 1 and end["threads"] == start["threads"]:
                break
            time.sleep(0.2)
        probe.close()
        time.sleep(0.3)
        end = proc_state(agent.pid)
        ok = (not failures.items and workers == 0 and end["fds"] == start["fds"]
              and end["threads"] == start["threads"]
              and end["rss_kib"] - start["rss_kib"] <= RSS_TOLERANCE_KIB)
        print(f"soak: {a.seconds:.0f} s, {a.clients} clients, {a.namespaces} namespaces")
        print(f"  requests {counts['requests']}, binds {counts['binds']} ({counts['bound_closed']} closed by their "
              f"namespace going away), disconnects {counts['disconnects']}, namespaces re-created {counts['recreated']}")
        print(f"  start: fds {start['fds']}, threads {start['threads']}, RSS {start['rss_kib']} KiB, workers 0")
        print(f"  peak:  fds {peak['fds']}, threads {peak['threads']}, RSS {peak['rss_kib']} KiB")
        print(f"  end:   fds {end['fds']}, threads {end['threads']}, RSS {end['rss_kib']} KiB, workers {workers} "
              f"(RSS tolerance {RSS_TOLERANCE_KIB} KiB)")
        print(f"  failed checks: {len(failures.items)}")
        for f_ in failures.items[:20]:
            print("   ", f_)
        print("soak: " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
        for n in names:
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
