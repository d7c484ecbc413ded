"""Unit tests for scripts/bfcl_to_jsonl.py over a tiny inline BFCL fixture.

Run: python3 -m unittest scripts/test_bfcl_to_jsonl.py
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bfcl_to_jsonl as b  # noqa: E402

FS_DOCS = [
    {
        "name": "cd",
        "description": "Change directory.",
        "parameters": {"type": "dict", "properties": {"folder": {"type": "string"}}, "required": ["folder"]},
        "response": {"type": "dict", "properties": {}},
    },
    {
        "name": "sort",
        "description": "Sort a file.",
        "parameters": {"type": "dict", "properties": {"file_name": {"type": "string"}}, "required": ["file_name"]},
    },
    {
        "name": "cp",
        "description": "Copy.",
        "parameters": {
            "type": "dict",
            "properties": {"source": {"type": "string"}, "destination": {"type": "string"}},
            "required": ["source", "destination"],
        },
    },
]
MATH_DOCS = [
    {
        "name": "mean",
        "description": "Mean of numbers.",
        "parameters": {
            "type": "dict",
            "properties": {"numbers": {"type": "array", "items": {"type": "float"}}},
            "required": ["numbers"],
        },
    }
]
MULTI_TURN = {
    "id": "multi_turn_base_0",
    "question": [
        [{"role": "user", "content": "Go to docs and sort report.txt"}],
        [{"role": "user", "content": "Average of 1, 2.5?"}],
        [{"role": "user", "content": "Send me the invoice."}],
    ],
    "initial_config": {},
    "path": [],
    "involved_classes": ["GorillaFileSystem", "MathAPI"],
    "excluded_function": ["cp"],
}
MULTI_TURN_GOLD = {
    "id": "multi_turn_base_0",
    "ground_truth": [["cd(folder='docs')", "sort('report.txt')"], ["mean(numbers=[1, 2.5])"], []],
}
LIVE_MULTIPLE = {
    "id": "live_multiple_0-0-0",
    "question": [
        [
            {"role": "system", "content": "You are a barista bot."},
            {"role": "user", "content": "Large latte with coconut milk, drink id latte"},
        ]
    ],
    "function": [
        {
            "name": "ChaFod",
            "description": "Change food.",
            "parameters": {"type": "dict", "required": ["foodItem"], "properties": {"foodItem": {"type": "string"}}},
        },
        {
            "name": "ChaDri.change_drink",
            "description": "Change drink.",
            "parameters": {
                "type": "dict",
                "required": ["new_preferences"],
                "properties": {
                    "drink_id": {"type": "string", "default": "0000"},
                    "note": {"type": "string", "default": ""},
                    "new_preferences": {
                        "type": "dict",
                        "properties": {
                            "size": {"type": "string", "enum": ["small", "large"]},
                            "milk_type": {"type": "string"},
                            "extra": {"type": "string"},
                        },
                    },
                },
            },
        },
    ],
}
LIVE_MULTIPLE_GOLD = {
    "id": "live_multiple_0-0-0",
    "ground_truth": [
        {
            "ChaDri.change_drink": {
                "drink_id": ["latte"],
                "note": ["", "none"],
                "new_preferences": [{"size": ["large"], "milk_type": ["coconut", "Coconut"], "extra": [""]}],
            }
        }
    ],
}


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


class SchemaTest(unittest.TestCase):
    def test_python_types_become_json_schema(self):
        schema = {
            "type": "dict",
            "properties": {
                "ratio": {"type": "float", "description": "r", "default": 0.5},
                "point": {"type": "tuple", "items": {"type": "integer"}},
                "blob": {"type": "any", "description": "anything"},
                "opts": {
                    "type": "dict",
                    "properties": {"mode": {"type": "string", "enum": ["a", "b"]}},
                    "required": ["mode"],
                },
                "tags": {"type": "array", "items": {"type": "string"}, "enum": ["x", "y"]},
                "flag": {"type": "boolean", "optional": True},
            },
            "required": ["ratio"],
        }
        out = b.convert_schema(schema)
        self.assertEqual(out["type"], "object")
        self.assertEqual(out["required"], ["ratio"])
        p = out["properties"]
        self.assertEqual(p["ratio"], {"type": "number", "description": "r", "default": 0.5})
        self.assertEqual(p["point"], {"type": "array", "items": {"type": "integer"}})
        self.assertEqual(p["blob"], {"description": "anything"})
        self.assertEqual(p["opts"]["type"], "object")
        self.assertEqual(p["opts"]["properties"]["mode"], {"type": "string", "enum": ["a", "b"]})
        self.assertEqual(p["opts"]["required"], ["mode"])
        # an enum on a list constrains its items
        self.assertEqual(p["tags"], {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}})
        self.assertEqual(p["flag"], {"type": "boolean"})

    def test_unknown_type_is_an_error(self):
        with self.assertRaises(b.ConversionError):
            b.convert_schema({"type": "dict", "properties": {"x": {"type": "frobnicate"}}})

    def test_tool_name_is_sanitised(self):
        tool = b.convert_tool(LIVE_MULTIPLE["function"][1])
        self.assertEqual(tool["type"], "function")
        self.assertEqual(tool["function"]["name"], "ChaDri_change_drink")
        self.assertEqual(tool["function"]["parameters"]["type"], "object")


class PythonCallTest(unittest.TestCase):
    ORDER = {"cd": ["folder"], "sort": ["file_name"], "diff": ["file_name1", "file_name2"], "mean": ["numbers"]}

    def test_keyword_and_positional(self):
        self.assertEqual(b.parse_python_call("cd(folder='document')", self.ORDER), ("cd", {"folder": "document"}))
        self.assertEqual(
            b.parse_python_call("sort('final_report.pdf')", self.ORDER), ("sort", {"file_name": "final_report.pdf"})
        )
        self.assertEqual(
            b.parse_python_call("diff('a.txt', file_name2='b.txt')", self.ORDER),
            ("diff", {"file_name1": "a.txt", "file_name2": "b.txt"}),
        )

    def test_literals(self):
        _, args = b.parse_python_call("mean(numbers=[1, -2.5, (3, 4)])", self.ORDER)
        self.assertEqual(args, {"numbers": [1, -2.5, [3, 4]]})

    def test_rejects_non_literals_and_unknown_functions(self):
        with self.assertRaises(b.ConversionError):
            b.parse_python_call("cd(folder=os.getcwd())", self.ORDER)
        with self.assertRaises(b.ConversionError):
            b.parse_python_call("rm(file_name='x')", self.ORDER)
        with self.assertRaises(b.ConversionError):
            b.parse_python_call("cd('a', 'b')", self.ORDER)


class ConvertTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        raw = self.tmp.name
        write_jsonl(os.path.join(raw, "multi_turn_func_doc", "gorilla_file_system.json"), FS_DOCS)
        write_jsonl(os.path.join(raw, "multi_turn_func_doc", "math_api.json"), MATH_DOCS)
        write_jsonl(os.path.join(raw, "BFCL_v4_multi_turn_base.json"), [MULTI_TURN])
        write_jsonl(os.path.join(raw, "possible_answer", "BFCL_v4_multi_turn_base.json"), [MULTI_TURN_GOLD])
        write_jsonl(os.path.join(raw, "BFCL_v4_live_multiple.json"), [LIVE_MULTIPLE])
        write_jsonl(os.path.join(raw, "possible_answer", "BFCL_v4_live_multiple.json"), [LIVE_MULTIPLE_GOLD])
        self.records, self.stats = b.convert(raw, "test-model", ("multi_turn_base", "live_multiple"))

    def tearDown(self):
        self.tmp.cleanup()

    def test_counts(self):
        self.assertEqual(len(self.records), 4)
        self.assertEqual(self.stats.skipped, [])
        self.assertEqual(self.stats.violations, [])
        self.assertEqual(self.stats.gold_empty["multi_turn_base"], 1)

    def test_multi_turn_records(self):
        t0, t1, t2 = self.records[:3]
        # one user turn per request, no history
        self.assertEqual(t1["request"]["messages"], [{"role": "user", "content": "Average of 1, 2.5?"}])
        # tools: both classes, without the excluded function
        names = [t["function"]["name"] for t in t0["request"]["tools"]]
        self.assertEqual(names, ["cd", "sort", "mean"])
        self.assertEqual(t0["request"]["tool_choice"], "auto")
        self.assertNotIn("response", t0["request"]["tools"][0]["function"])
        calls = t0["response"]["choices"][0]["message"]["tool_calls"]
        self.assertEqual([c["id"] for c in calls], ["call_0", "call_1"])
        self.assertEqual(json.loads(calls[1]["function"]["arguments"]), {"file_name": "report.txt"})
        self.assertEqual(t0["response"]["choices"][0]["finish_reason"], "tool_calls")
        self.assertIsNone(t0["response"]["choices"][0]["message"]["content"])
        self.assertEqual(t0["response"]["id"], "chatcmpl-bfcl-multi_turn_base_0-turn0")
        self.assertEqual(t0["response"]["object"], "chat.completion")
        self.assertEqual(t0["response"]["model"], "test-model")
        self.assertEqual(
            t0["metadata"],
            {
                "source": "bfcl",
                "bfcl_category": "multi_turn_base",
                "bfcl_id": "multi_turn_base_0",
                "turn": "0",
                "api_class": "GorillaFileSystem",
                "involved_classes": "GorillaFileSystem+MathAPI",
                "gold_calls": "2",
            },
        )
        self.assertEqual(t1["metadata"]["api_class"], "MathAPI")
        # a turn without gold calls is a text answer
        msg = t2["response"]["choices"][0]
        self.assertEqual(msg["finish_reason"], "stop")
        self.assertEqual(msg["message"]["content"], b.EMPTY_TURN_REPLY)
        self.assertNotIn("tool_calls", msg["message"])
        self.assertEqual(t2["metadata"]["gold_empty"], "true")
        self.assertEqual(t2["metadata"]["gold_calls"], "0")

    def test_live_multiple_record(self):
        r = self.records[3]
        self.assertEqual([m["role"] for m in r["request"]["messages"]], ["system", "user"])
        self.assertEqual([t["function"]["name"] for t in r["request"]["tools"]], ["ChaFod", "ChaDri_change_drink"])
        (call,) = r["response"]["choices"][0]["message"]["tool_calls"]
        self.assertEqual(call["function"]["name"], "ChaDri_change_drink")
        # first acceptable value; "" = leave the parameter out (also inside dict arguments)
        self.assertEqual(
            json.loads(call["function"]["arguments"]),
            {"drink_id": "latte", "new_preferences": {"size": "large", "milk_type": "coconut"}},
        )
        meta = r["metadata"]
        self.assertEqual(meta["toolset"], b.toolset_id(["ChaFod", "ChaDri_change_drink"]))
        self.assertTrue(meta["toolset"].startswith("ts-") and len(meta["toolset"]) == 13)
        self.assertEqual(meta["toolset_size"], "2")
        self.assertEqual(meta["gold_calls"], "1")
        self.assertNotIn("gold_issue", meta)
        for v in meta.values():
            self.assertIsInstance(v, str)

    def test_output_is_deterministic(self):
        again, _ = b.convert(self.tmp.name, "test-model", ("multi_turn_base", "live_multiple"))
        self.assertEqual(json.dumps(again), json.dumps(self.records))


class GoldTest(unittest.TestCase):
    FUNC = {
        "name": "f",
        "parameters": {
            "type": "dict",
            "required": ["a", "b"],
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "array"}},
        },
    }

    def test_required_param_marked_optional_takes_a_real_value(self):
        issues = []
        _, args = b.resolve_ast_call({"f": {"a": ["", 100], "b": ["x"], "c": []}}, self.FUNC, issues)
        self.assertEqual(args, {"a": 100, "b": "x", "c": []})
        self.assertEqual(len(issues), 2)

    def test_renamed_param_follows_the_schema(self):
        issues = []
        _, args = b.resolve_ast_call({"f": {"a": [1], "question": ["why"]}}, self.FUNC, issues)
        self.assertEqual(args, {"a": 1, "b": "why"})
        self.assertEqual(issues, ["renamed_param:f.question->b"])


if __name__ == "__main__":
    unittest.main()
