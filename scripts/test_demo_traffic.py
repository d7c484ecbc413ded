"""Unit tests for scripts/demo_traffic.py over small inline BFCL- and τ²-style records and the
real varied-traffic generator.

Run: python3 -m unittest scripts/test_demo_traffic.py
"""

import collections
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import demo_traffic as d  # noqa: E402

INTENTS = {"billing", "cancellation", "shipping", "technical", "account", "other"}


def call(meta, text):
    return {"request": {"model": "m", "messages": [{"role": "user", "content": text}]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]},
            "metadata": meta}


def bfcl(conversations, steps):
    return [call({"source": "bfcl", "bfcl_id": f"multi_turn_base_{c}", "step": str(s)}, f"b{c}.{s}")
            for c in range(conversations) for s in range(steps)]


def tau2():
    return ([call({"source": "tau2", "domain": "airline", "tau2_task": str(t), "step": str(s)}, f"a{t}.{s}")
             for t in range(4) for s in range(2)]
            + [call({"source": "tau2", "domain": "telecom", "tau2_task": "0", "step": "0"}, "t0")])


def lookups(conversations):
    return [call({"source": "tau2", "domain": "airline", "conversation": f"lookup-{c}", "step": str(s)},
                 f"l{c}.{s}") for c in range(conversations) for s in range(2)]


class DemoTrafficTest(unittest.TestCase):
    def build(self, **kw):
        args = dict(bfcl=bfcl(10, 3), tau2=tau2(), bfcl_calls=12, tau2_calls=None,
                    support={"intent": 30, "extract": 20, "chat": 5}, seed=1)
        args.update(kw)
        return d.build(**args)

    def test_the_mix_has_the_asked_parts_tagged_by_agent(self):
        recs = self.build()
        agents = collections.Counter(r["metadata"]["agent"] for r in recs)
        # whole BFCL conversations of 3 calls until 12 are taken; every τ² call
        self.assertEqual(agents, {"bfcl": 12, "tau2-airline": 8, "tau2-telecom": 1, "support": 55})
        jobs = collections.Counter(r["metadata"].get("job") for r in recs if r["metadata"]["agent"] == "support")
        self.assertEqual(jobs, {"support:intent": 30, "support:extract": 20, "support:chat": 5})
        # timestamps increase in file order, and the sources are interleaved
        ts = [r["timestamp"] for r in recs]
        self.assertEqual(ts, sorted(ts))
        self.assertEqual(len(set(ts)), len(ts))
        self.assertNotEqual([r["metadata"]["agent"] for r in recs[:12]], ["bfcl"] * 12)

    def test_conversations_are_kept_whole(self):
        recs = self.build(bfcl_calls=7)
        by_conv = collections.Counter(r["metadata"]["bfcl_id"] for r in recs if r["metadata"]["agent"] == "bfcl")
        self.assertEqual(sorted(by_conv.values()), [3, 3, 3])  # 7 asked: three whole conversations
        # a different seed draws different conversations
        other = self.build(bfcl_calls=7, seed=2)
        ids = lambda rs: {r["metadata"]["bfcl_id"] for r in rs if r["metadata"]["agent"] == "bfcl"}  # noqa: E731
        self.assertNotEqual(ids(recs), ids(other))

    def test_deterministic_and_parts_can_be_left_out(self):
        self.assertEqual(self.build(), self.build())
        recs = self.build(bfcl_calls=0, tau2_calls=0, support={"intent": 10, "extract": 0, "chat": 0})
        self.assertEqual({r["metadata"]["agent"] for r in recs}, {"support"})
        self.assertEqual(len(recs), 10)
        self.assertEqual(self.build(bfcl_calls=0, tau2_calls=0, support={}), [])

    def test_support_answers_are_consistent(self):
        recs = self.build(bfcl_calls=0, tau2_calls=0)
        for r in recs:
            job = r["metadata"]["job"]
            msgs = r["request"]["messages"]
            answer = r["response"]["choices"][0]["message"]["content"]
            if job == "support:intent":
                self.assertIn(answer, INTENTS)
            elif job == "support:extract":
                fields = json.loads(answer)
                self.assertEqual(set(fields), {"name", "email", "order_id", "city", "request"})
                # every extracted value but the (normalised) request is in the customer's message
                for k in ("name", "email", "order_id", "city"):
                    self.assertIn(fields[k], msgs[-1]["content"])
            # one system prompt per job: the same job always has the same one
        systems = collections.defaultdict(set)
        for r in recs:
            systems[r["metadata"]["job"]].add(r["request"]["messages"][0]["content"])
        self.assertTrue(all(len(s) == 1 for s in systems.values()), systems)

    def test_lookups_join_the_airline_agent(self):
        recs = self.build(lookups=lookups(5), lookup_calls=None)
        agents = collections.Counter(r["metadata"]["agent"] for r in recs)
        self.assertEqual(agents["tau2-airline"], 8 + 10)
        # whole lookup conversations until 4 calls: 2 conversations of 2
        recs = self.build(lookups=lookups(5), lookup_calls=4)
        self.assertEqual(collections.Counter(r["metadata"]["agent"] for r in recs)["tau2-airline"], 8 + 4)
        self.assertEqual(self.build(lookups=lookups(5), lookup_calls=0), self.build())

    def test_main_writes_the_file_and_missing_inputs_are_explained(self):
        with tempfile.TemporaryDirectory() as tmp:
            b, t, lk, out = (os.path.join(tmp, n) for n in ("b.jsonl", "t.jsonl", "l.jsonl", "sub/out.jsonl"))
            for path, recs in ((b, bfcl(4, 2)), (t, tau2()), (lk, lookups(3))):
                with open(path, "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in recs)
            with redirect_stderr(io.StringIO()) as err:
                d.main(["--out", out, "--bfcl", b, "--tau2", t, "--lookups", lk, "--bfcl-calls", "-1",
                        "--intent-calls", "6", "--extract-calls", "4", "--chat-calls", "2"])
            with open(out) as f:
                lines = [json.loads(line) for line in f]
            self.assertEqual(len(lines), 8 + 9 + 6 + 12)
            self.assertIn("wrote 35 calls", err.getvalue())
            with redirect_stderr(io.StringIO()):
                d.main(["--out", out, "--bfcl", b, "--tau2", t, "--lookups", os.path.join(tmp, "none.jsonl"),
                        "--lookup-calls", "0", "--bfcl-calls", "-1",
                        "--intent-calls", "6", "--extract-calls", "4", "--chat-calls", "2"])
            with open(out) as f:
                self.assertEqual(len(f.readlines()), 8 + 9 + 12)
            self.assertFalse(os.path.exists(out + ".partial"))
            with self.assertRaises(SystemExit) as e:
                d.main(["--out", out, "--bfcl", os.path.join(tmp, "none.jsonl"), "--tau2", t])
            self.assertIn("run scripts/fetch.sh bfcl", str(e.exception))
            with open(b, "a") as f:
                f.write("{not json\n")
            with self.assertRaises(SystemExit) as e:
                d.main(["--out", out, "--bfcl", b, "--tau2", t])
            self.assertIn("is not JSON", str(e.exception))
            with redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                d.main(["--out", out, "--intent-calls", "-1"])


if __name__ == "__main__":
    unittest.main()
