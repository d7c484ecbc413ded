#!/usr/bin/env python3
"""SQLite page size for the call log: CPU (user + system) per inserted call and file size.

Inserts 40,000 rows shaped like downshift's sealed calls (text id, timestamp, model, tags, a
2,500-byte random payload; the calls table's two secondary indexes) in transactions of 40 rows,
WAL mode, synchronous=NORMAL -- the log writer's pattern at ~20k req/s with a 2 ms group commit --
once with 4 KiB pages (SQLite's default, downshift before 16 KiB) and once with 16 KiB, twice each.

    python3 bench/store/page_size.py
"""
import os
import sqlite3
import tempfile
import time
import uuid


def run(page_size: int, directory: str) -> None:
    path = os.path.join(directory, f"ps{page_size}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute(f"pragma page_size={page_size}")
    c.execute("pragma journal_mode=WAL")
    c.execute("pragma synchronous=NORMAL")
    c.execute("create table calls(id text primary key, ts integer, model text, tags text, payload blob)")
    c.execute("create index calls_ts on calls(ts)")
    c.execute("create index calls_model on calls(model, ts)")
    cpu0, wall0, n = time.process_time(), time.time(), 0
    for _ in range(1000):
        c.execute("begin immediate")
        for _ in range(40):
            n += 1
            c.execute("insert into calls values(?,?,?,?,?)",
                      (str(uuid.UUID(int=n)), n, "gpt-4o", '{"a":"b"}', os.urandom(2500)))
        c.execute("commit")
    cpu = time.process_time() - cpu0
    c.execute("pragma wal_checkpoint(TRUNCATE)")
    c.close()
    print(f"| {page_size} | {cpu / n * 1e6:.1f} | {(time.time() - wall0) / n * 1e6:.1f} | "
          f"{os.path.getsize(path) / 1e6:.1f} |")


if __name__ == "__main__":
    print("| page size | CPU µs per call | wall µs per call | file MB (40k calls) |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for ps in (4096, 16384, 4096, 16384):
            run(ps, d)
