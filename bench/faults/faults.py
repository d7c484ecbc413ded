"""Helpers for bench/faults/run.sh: each subcommand prints one JSON result line (or the table)."""

import http.client
import json
import socket
import sqlite3
import sys
import threading
import time

SMALL = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def real_request(addr):
    """One real chat request on a fresh connection; (status, seconds)."""
    host, port = addr.rsplit(":", 1)
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("POST", "/v1/chat/completions", SMALL, {"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        status = r.status
        c.close()
    except OSError as e:
        return f"error: {e}", time.monotonic() - t
    return status, time.monotonic() - t


def compare_ids(ids_path, logged_path, trial):
    answered = [l.strip() for l in open(ids_path) if l.strip()]
    logged = {json.loads(l)["id"] for l in open(logged_path) if l.strip()}
    missing = [i for i in answered if i not in logged]
    print(json.dumps({"kind": "kill9", "trial": int(trial), "answered": len(answered),
                      "missing": len(missing), "logged": len(logged)}))


def admin_loop(addr, seconds):
    host, port = addr.rsplit(":", 1)
    end = time.monotonic() + float(seconds)
    n = 0
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    while time.monotonic() < end:
        c.request("GET", "/admin/calls?limit=1000")
        c.getresponse().read()
        n += 1
    print(json.dumps({"admin_reads": n}))


def pair(kind, before, during):
    b, d = json.load(open(before)), json.load(open(during))
    print(json.dumps({"kind": kind, "p99_before_ms": b["p99_us"] / 1000,
                      "p99_during_ms": d["p99_us"] / 1000, "max_during_ms": d["max_us"] / 1000,
                      "errors": b["errors"] + d["errors"]}))


def hold_lock(db, seconds, addr):
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    call_id = conn.execute("SELECT id FROM calls LIMIT 1").fetchone()[0]
    conn.execute("BEGIN IMMEDIATE")
    held = time.monotonic()
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    t = time.monotonic()
    c.request("GET", f"/admin/calls/{call_id}")
    r = c.getresponse()
    body = r.read()
    admin = {"status": r.status, "seconds": time.monotonic() - t,
             "code": (json.loads(body).get("error") or {}).get("code") if body else None}
    time.sleep(max(0.0, float(seconds) - (time.monotonic() - held)))
    conn.execute("COMMIT")
    print(json.dumps(admin))


def lock(during, admin):
    d, a = json.load(open(during)), json.load(open(admin))
    print(json.dumps({"kind": "write_lock", "max_ms": d["max_us"] / 1000, "p99_ms": d["p99_us"] / 1000,
                      "requests": d["requests"], "errors": d["errors"], "admin_status": a["status"],
                      "admin_code": a["code"], "admin_s": a["seconds"]}))


def wait_closed(socks, limit, t0):
    """Seconds from `t0` until each socket is closed by the server (None: still open at `limit`)."""
    out = []
    for s in socks:
        left = limit - (time.monotonic() - t0)
        if left <= 0:
            out.append(None)
            continue
        s.settimeout(left)
        try:
            while s.recv(4096):
                pass
            out.append(time.monotonic() - t0)
        except socket.timeout:
            out.append(None)
        except OSError:
            out.append(time.monotonic() - t0)
    return out


def flood(addr, n_idle, n_half, limit, label):
    host, port = addr.rsplit(":", 1)
    t0 = time.monotonic()
    idle = [socket.create_connection((host, int(port))) for _ in range(int(n_idle))]
    half = []
    for _ in range(int(n_half)):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        half.append(s)
    time.sleep(0.2)
    status, real = real_request(addr)
    # Times count from when the flood began (the connections open within a few milliseconds).
    closed_half = wait_closed(half, float(limit), t0)
    closed_idle = wait_closed(idle, float(limit), t0)
    done = lambda xs: [x for x in xs if x is not None]
    print(json.dumps({"kind": "flood", "label": label, "idle": len(idle), "half": len(half),
                      "idle_closed": len(done(closed_idle)), "half_closed": len(done(closed_half)),
                      "idle_closed_by_s": max(done(closed_idle), default=None),
                      "half_closed_by_s": max(done(closed_half), default=None),
                      "real_status": status, "real_ms": real * 1000}))
    for s in idle + half:
        s.close()


def exhaust(addr, n):
    host, port = addr.rsplit(":", 1)
    socks = []
    failed = 0
    for _ in range(int(n)):
        try:
            s = socket.create_connection((host, int(port)), timeout=2)
            socks.append(s)
        except OSError:
            failed += 1
    time.sleep(0.5)
    status, real = real_request(addr)
    print(json.dumps({"kind": "exhaust", "connections": len(socks), "connect_failed": failed,
                      "real_status": status, "real_ms": real * 1000}))
    for s in socks:
        s.close()


def table(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    print("\n| scenario | result |")
    print("|---|---|")
    for r in rows:
        k = r["kind"]
        if k == "kill9":
            print(f"| kill -9 under load, trial {r['trial']} | {r['answered']} answered with 200, "
                  f"{r['missing']} missing from the log ({r['logged']} logged) |")
        elif k == "admin_read_loop":
            print(f"| admin read loop (GET /admin/calls?limit=1000), /v1 at 500 req/s | p99 "
                  f"{r['p99_before_ms']:.2f} ms before, {r['p99_during_ms']:.2f} ms during "
                  f"(max {r['max_during_ms']:.1f} ms), {r['errors']} errors |")
        elif k == "write_lock":
            print(f"| 3 s external write lock, /v1 at 200 req/s | max {r['max_ms']:.1f} ms, p99 "
                  f"{r['p99_ms']:.2f} ms over {r['requests']} requests, {r['errors']} errors; audited "
                  f"admin read: {r['admin_status']} {r['admin_code'] or ''} after {r['admin_s']:.2f} s |")
        elif k == "flood":
            print(f"| {r['idle']} idle + {r['half']} half-header connections ({r['label']} timeouts) | "
                  f"{r['idle_closed']}/{r['idle']} idle closed by {r['idle_closed_by_s'] or float('nan'):.1f} s, "
                  f"{r['half_closed']}/{r['half']} half-header closed by "
                  f"{r['half_closed_by_s'] or float('nan'):.1f} s; real request {r['real_status']} in "
                  f"{r['real_ms']:.1f} ms |")
        elif k == "exhaust":
            print(f"| ulimit -n 1024, {r['connections']} idle connections ({r['connect_failed']} refused) | "
                  f"real request {r['real_status']} in {r['real_ms']:.1f} ms |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"compare-ids": compare_ids, "admin-loop": admin_loop, "pair": pair, "hold-lock": hold_lock,
     "lock": lock, "flood": flood, "exhaust": exhaust, "table": table}[cmd](*args)
