#!/usr/bin/env python3
"""Copy a JSON Lines call log keeping, in each request, only the tools its answer calls (the
first tool when it calls none): BFCL requests carry ~10 tool definitions (~6 KB), and 1M such
calls need more disk than the benchmark machine has. Usage: called_tools.py IN OUT"""
import json, sys

with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in f:
        rec = json.loads(line)
        calls = rec["response"]["choices"][0]["message"].get("tool_calls") or []
        called = {c["function"]["name"] for c in calls}
        tools = rec["request"].get("tools") or []
        if tools:
            rec["request"]["tools"] = [t for t in tools if t["function"]["name"] in called] or tools[:1]
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
