"""Unit tests for scripts/tau2_to_jsonl.py over a tiny inline τ²-style domain.

Run: python3 -m unittest scripts/test_tau2_to_jsonl.py
"""

import json
import os
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tau2_to_jsonl as t  # noqa: E402

TOOLS_PY = textwrap.dedent('''
    from typing import List, Optional
    from tau2.environment.toolkit import ToolKitBase, ToolType, is_tool
    from tau2.domains.airline.data_model import CabinClass

    class AirlineTools(ToolKitBase):
        def _private(self, x: str) -> str:
            return x

        @is_tool(ToolType.READ)
        def get_user_details(self, user_id: str) -> dict:
            """
            Get the details of a user.

            Args:
                user_id: The user ID, such as 'sara_doe_496'.

            Returns:
                The user.
            """

        @is_tool(ToolType.WRITE)
        def cancel_reservation(self, reservation_id: str, cabin: CabinClass, seats: List[int],
                               note: Optional[str] = None) -> dict:
            """
            Cancel the whole reservation.

            Args:
                reservation_id: The reservation ID,
                    six characters.
                cabin: The cabin.
                seats: Seat numbers.
                note: Free text.
            """
''')
DATA_MODEL_PY = 'from typing import Literal\nCabinClass = Literal["business", "economy"]\n'
DB = {
    "users": {"emma_kim_9957": {"user_id": "emma_kim_9957", "email": "emma.kim@example.com",
                                 "reservations": ["EHGLP3"]}},
    "reservations": {"EHGLP3": {"reservation_id": "EHGLP3", "user_id": "emma_kim_9957", "status": "active"}},
    "flights": {},
}
TASKS = [
    {"id": "0", "user_scenario": {"instructions": {
        "reason_for_call": "You want to cancel reservation EHGLP3.",
        "known_info": "You are Emma Kim.\nYour user id is emma_kim_9957."}},
     "evaluation_criteria": {"actions": [
         {"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3"}},
         {"name": "not_a_tool", "arguments": {}}]}},
    # the same conversation again: written once
    {"id": "1", "user_scenario": {"instructions": {
        "reason_for_call": "You want to cancel reservation EHGLP3.",
        "known_info": "You are Emma Kim.\nYour user id is emma_kim_9957."}},
     "evaluation_criteria": {"actions": [
         {"name": "cancel_reservation", "arguments": {"reservation_id": "EHGLP3"}}]}},
]


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_root(tmp):
    code = os.path.join(tmp, "tau2/domains/airline")
    data = os.path.join(tmp, "tau2/data/tau2/domains/airline")
    os.makedirs(code)
    os.makedirs(data)
    write(os.path.join(code, "tools.py"), TOOLS_PY)
    write(os.path.join(code, "data_model.py"), DATA_MODEL_PY)
    write(os.path.join(data, "policy.md"), "# Airline agent policy\nBe careful.")
    write(os.path.join(data, "db.json"), json.dumps(DB))
    write(os.path.join(data, "tasks.json"), json.dumps(TASKS))
    return tmp


class Tau2Test(unittest.TestCase):
    def test_tools_from_source(self):
        with tempfile.TemporaryDirectory() as tmp:
            make_root(tmp)
            tools = t.read_tools(os.path.join(tmp, "tau2/domains/airline/tools.py"),
                                 os.path.join(tmp, "tau2/domains/airline/data_model.py"))
        self.assertEqual([x["function"]["name"] for x in tools], ["get_user_details", "cancel_reservation"])
        cancel = tools[1]["function"]
        self.assertEqual(cancel["description"], "Cancel the whole reservation.")
        p = cancel["parameters"]
        self.assertEqual(p["required"], ["reservation_id", "cabin", "seats"])
        self.assertEqual(p["properties"]["cabin"]["enum"], ["business", "economy"])
        self.assertEqual(p["properties"]["seats"], {"type": "array", "items": {"type": "integer"},
                                                    "description": "Seat numbers."})
        self.assertEqual(p["properties"]["reservation_id"]["description"], "The reservation ID, six characters.")

    def test_calls_lookups_results_and_tags(self):
        with tempfile.TemporaryDirectory() as tmp:
            recs = t.convert_domain(make_root(tmp), "airline")
        # get_user_details (lookup), get_reservation_details (lookup), cancel; task 1 repeats task 0
        self.assertEqual([r["metadata"]["tool"] for r in recs],
                         ["get_user_details", "get_reservation_details", "cancel_reservation"])
        self.assertEqual([r["metadata"]["step"] for r in recs], ["0", "1", "2"])
        self.assertEqual(recs[2]["metadata"]["job"], "airline:cancel_reservation")
        first = recs[0]["request"]["messages"]
        self.assertEqual(first[0], {"role": "system", "content": "# Airline agent policy\nBe careful."})
        self.assertEqual(first[1]["content"],
                         "I am Emma Kim.\nMy user id is emma_kim_9957.\nI want to cancel reservation EHGLP3.")
        last = recs[2]["request"]["messages"]
        self.assertEqual(len(last), 6)
        self.assertEqual(json.loads(last[3]["content"])["email"], "emma.kim@example.com")
        self.assertEqual(json.loads(last[5]["content"])["status"], "active")
        call = recs[2]["response"]["choices"][0]["message"]["tool_calls"][0]
        self.assertEqual(json.loads(call["function"]["arguments"]), {"reservation_id": "EHGLP3"})
        self.assertEqual(last[4]["tool_calls"][0]["id"], last[5]["tool_call_id"])

    def test_retail_is_refused(self):
        with self.assertRaises(ValueError):
            t.convert_domain("/nonexistent", "retail")


if __name__ == "__main__":
    unittest.main()
