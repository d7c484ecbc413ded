"""Unit tests for scripts/tau2_lookups.py over the fetched τ² airline domain
(`scripts/fetch.sh tau2`; CI fetches it before the tests).

Run: python3 -m unittest scripts/test_tau2_lookups.py
"""

import collections
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tau2_lookups as lk  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "tau2", "raw")
DB = os.path.join(ROOT, "tau2", "data", "tau2", "domains", "airline", "db.json")


def args_of(rec):
    call = rec["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
    return call["name"], json.loads(call["arguments"])


class LookupsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(DB):
            raise unittest.SkipTest(f"{DB} is missing: run scripts/fetch.sh tau2")
        with open(DB, encoding="utf-8") as f:
            cls.db = json.load(f)
        cls.recs = lk.build(ROOT, 120, seed=5)

    def test_answers_are_computed_from_the_database(self):
        users, res, flights = self.db["users"], self.db["reservations"], self.db["flights"]
        for r in self.recs:
            name, args = args_of(r)
            if name == "get_user_details":
                self.assertIn(args["user_id"], users)
                # the customer said it: the id is in the last user message
                last = [m for m in r["request"]["messages"] if m["role"] == "user"][-1]["content"]
                self.assertIn(args["user_id"], last)
            elif name == "get_reservation_details":
                rid = args["reservation_id"]
                self.assertIn(rid, res)
                uid = json.loads(next(m["content"] for m in r["request"]["messages"] if m["role"] == "tool"))["user_id"]
                self.assertIn(rid, users[uid]["reservations"])
            else:
                self.assertEqual(name, "get_flight_status")
                self.assertIn(args["date"], flights[args["flight_number"]]["dates"])
                if r["metadata"]["kind"] == "trip_status":
                    # the flight is one of the booking the agent fetched before
                    booking = json.loads(r["request"]["messages"][-2]["content"])
                    self.assertIn({"flight_number": args["flight_number"], "date": args["date"]},
                                  [{"flight_number": f["flight_number"], "date": f["date"]} for f in booking["flights"]])

    def test_conversations_steps_tags_and_variety(self):
        by_conv = collections.defaultdict(list)
        for r in self.recs:
            m = r["metadata"]
            self.assertEqual((m["source"], m["domain"]), ("tau2", "airline"))
            self.assertEqual(m["job"], f"airline:{m['tool']}")
            by_conv[m["conversation"]].append(r)
            self.assertEqual(r["request"]["messages"][0]["role"], "system")
            self.assertTrue(r["request"]["tools"])
        for recs in by_conv.values():
            steps = [int(r["metadata"]["step"]) for r in recs]
            self.assertEqual(steps, list(range(len(steps))))
            # each step's request extends the one before by the call, its result (and a
            # follow-up message)
            for a, b in zip(recs, recs[1:]):
                n = len(a["request"]["messages"])
                self.assertEqual(b["request"]["messages"][:n], a["request"]["messages"])
                self.assertEqual(b["request"]["messages"][n]["tool_calls"],
                                 a["response"]["choices"][0]["message"]["tool_calls"])
                self.assertEqual(b["request"]["messages"][n + 1]["role"], "tool")
        kinds = collections.Counter(r["metadata"]["kind"] for r in self.recs)
        self.assertEqual(set(kinds), {k for k, _ in lk.KINDS})
        self.assertGreater(len({r["metadata"]["lang"] for r in self.recs}), 2)
        openings = {r["request"]["messages"][1]["content"] for r in self.recs}
        self.assertGreater(len(openings), 100)

    def test_deterministic_and_the_file(self):
        self.assertEqual(lk.build(ROOT, 120, seed=5), self.recs)
        self.assertNotEqual(lk.build(ROOT, 120, seed=6), self.recs)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "l.jsonl")
            lk.main(["--root", ROOT, "--out", out, "--conversations", "10"])
            with open(out) as f:
                lines = [json.loads(line) for line in f]
            self.assertGreaterEqual(len(lines), 10)
            ts = [r["timestamp"] for r in lines]
            self.assertEqual(ts, sorted(set(ts)))
            with self.assertRaises(SystemExit):
                lk.main(["--root", ROOT, "--out", out, "--conversations", "-1"])


if __name__ == "__main__":
    unittest.main()
