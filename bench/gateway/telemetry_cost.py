#!/usr/bin/env python3
"""Gateway CPU per call with trace export off and on (issue 27).

Usage: bench/gateway/telemetry_cost.py BIN [BIN...] [--calls N]

For each binary: starts `BIN mock-llm` and `BIN serve --no-auth` in front of it, sends N
non-streamed chat completions (bench/gateway/request.json) one after another on one kept-alive
connection, and reads the gateway's user + system CPU time from /proc before and after. With
`--otlp`, a second run exports every call's span to an OTLP/HTTP receiver run by this script
(it answers 200 and counts the bytes). CPU time, not wall time: the client and the other
processes on the machine do not count, so the figure holds on a busy machine better than a
throughput run does.
"""

import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BODY = open(os.path.join(ROOT, "bench", "gateway", "request.json"), "rb").read()
TICK = 1e6 / os.sysconf("SC_CLK_TCK")  # µs per clock tick


def cpu_us(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


def start(args, env=None):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    for line in p.stdout:
        if "listening on http://" in line:
            return p, line.split("listening on http://")[1].strip()
    raise RuntimeError(f"{args} did not start")


class Receiver(http.server.BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        Receiver.received += len(self.rfile.read(n))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def measure(bin_, calls, otlp):
    env = dict(os.environ, DOWNSHIFT_LOG="warn")
    with tempfile.TemporaryDirectory() as d:
        mock, mock_addr = start([bin_, "mock-llm", "--listen", "127.0.0.1:0"], env)
        cfg = os.path.join(d, "gw.toml")
        with open(cfg, "w") as f:
            if otlp:
                f.write(f'[telemetry]\notlp_endpoint = "http://{otlp}"\n')
        gw, addr = start([bin_, "serve", "--listen", "127.0.0.1:0", "--no-auth", "--config", cfg,
                          "--data-dir", os.path.join(d, "data"), "--upstream", f"http://{mock_addr}"], env)
        try:
            host, port = addr.rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port))
            send = lambda: (c.request("POST", "/v1/chat/completions", BODY,
                                      {"content-type": "application/json"}), c.getresponse().read())
            for _ in range(200):  # warm up
                send()
            before, t0 = cpu_us(gw.pid), time.time()
            for _ in range(calls):
                send()
            used, wall = cpu_us(gw.pid) - before, time.time() - t0
            return used / calls, calls / wall
        finally:
            gw.terminate()
            mock.terminate()
            gw.wait()
            mock.wait()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    calls = 20000
    if "--calls" in sys.argv:
        calls = int(sys.argv[sys.argv.index("--calls") + 1])
        args.remove(str(calls))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    otlp = f"127.0.0.1:{srv.server_address[1]}"
    rows = []
    for b in args:
        for on in ([False, True] if "--otlp" in sys.argv else [False]):
            us, rate = measure(b, calls, otlp if on else None)
            rows.append({"bin": b, "otlp": on, "cpu_us_per_call": round(us, 1), "calls_per_s": round(rate)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"spans received: {Receiver.received} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
