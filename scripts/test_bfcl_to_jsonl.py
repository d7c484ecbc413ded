"""Unit tests for scripts/bfcl_to_jsonl.py over a tiny inline BFCL fixture.

Run: python3 -m unittest scripts/test_bfcl_to_jsonl.py
"""

import contextlib
import io
import json
import os
import random
import sys
import tempfile
import textwrap
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


# Stand-ins for BFCL's simulator modules (<raw>/func_source_code/), written by AgentTest. Like the real
# ones they import each other by their full bfcl_eval.* name; sort() draws from the global `random`
# (seeded per entry by the converter) and raises for an unknown file.
FAKE_SIMULATORS = {
    "__init__.py": "",
    "long_context.py": 'FS_NOTE = "fake long context"\n',
    "gorilla_file_system.py": textwrap.dedent(
        """
        import random

        from bfcl_eval.eval_checker.multi_turn_eval.func_source_code.long_context import FS_NOTE


        class GorillaFileSystem:
            def __init__(self):
                self.cwd = "/"
                self.files = {}

            def _load_scenario(self, scenario, long_context=False):
                assert long_context is False
                self.files = dict(scenario["files"])
                scenario["files"].clear()  # must not reach the entry's own initial_config

            def cd(self, folder):
                self.cwd = "/" if folder == ".." else folder
                return {"current_working_directory": self.cwd, "note": FS_NOTE}

            def sort(self, file_name):
                if file_name not in self.files:
                    raise ValueError(f"no such file: {file_name}")
                lines = sorted(self.files[file_name].split(" "))
                return {"sorted_content": " ".join(lines), "nonce": random.randint(0, 10**9)}

            def cp(self, source, destination):
                return None
        """
    ),
    "math_api.py": textwrap.dedent(
        """
        import mpmath


        class MathAPI:
            def mean(self, numbers):
                return {"result": sum(numbers) / len(numbers)}

            def logarithm(self, value, base, precision):
                return {"result": mpmath.log(value) / mpmath.log(base)}
        """
    ),
    "posting_api.py": "import no_such_module_for_this_test\n\n\nclass TwitterAPI:\n    pass\n",
}
AGENT_MATH_DOCS = MATH_DOCS + [
    {
        "name": "logarithm",
        "description": "Logarithm.",
        "parameters": {
            "type": "dict",
            "properties": {"value": {"type": "float"}, "base": {"type": "float"}, "precision": {"type": "integer"}},
            "required": ["value", "base", "precision"],
        },
    }
]
POSTING_DOCS = [
    {
        "name": "post_tweet",
        "description": "Post a tweet.",
        "parameters": {"type": "dict", "properties": {"content": {"type": "string"}}, "required": ["content"]},
    }
]
AGENT_ENTRIES = [
    (
        {
            "id": "multi_turn_base_0",
            "question": [
                [
                    {"role": "system", "content": "You are a shell."},
                    {"role": "user", "content": "Go to docs and sort report.txt"},
                ],
                [{"role": "user", "content": "Average of 1, 2.5?"}],
                [{"role": "user", "content": "Sort notes.txt"}],
                [{"role": "user", "content": "Send me the invoice."}],
                [{"role": "user", "content": "Go back up."}],
            ],
            "initial_config": {"GorillaFileSystem": {"files": {"report.txt": "b c a"}}},
            "path": [],
            "involved_classes": ["GorillaFileSystem", "MathAPI"],
            "excluded_function": ["cp"],
        },
        {
            "id": "multi_turn_base_0",
            "ground_truth": [
                ["cd(folder='docs')", "sort('report.txt')"],
                ["mean(numbers=[1, 2.5])"],
                ["sort(file_name='notes.txt')"],
                [],
                ["cd(folder='..')"],
            ],
        },
    ),
    (  # logarithm needs mpmath, which the converter never imports: skipped
        {
            "id": "multi_turn_base_1",
            "question": [[{"role": "user", "content": "log2 of 8?"}]],
            "initial_config": {},
            "involved_classes": ["MathAPI"],
        },
        {"id": "multi_turn_base_1", "ground_truth": [["logarithm(value=8, base=2, precision=3)"]]},
    ),
    (  # posting_api cannot be imported: an entry calling it is skipped ...
        {
            "id": "multi_turn_base_2",
            "question": [[{"role": "user", "content": "Tweet hi"}]],
            "initial_config": {},
            "involved_classes": ["TwitterAPI"],
        },
        {"id": "multi_turn_base_2", "ground_truth": [["post_tweet(content='hi')"]]},
    ),
    (  # ... one that only offers it is not
        {
            "id": "multi_turn_base_3",
            "question": [[{"role": "user", "content": "Go to docs"}]],
            "initial_config": {"GorillaFileSystem": {"files": {}}},
            "involved_classes": ["TwitterAPI", "GorillaFileSystem"],
        },
        {"id": "multi_turn_base_3", "ground_truth": [["cd(folder='docs')"]]},
    ),
]


def write_agent_raw(raw, simulators=True):
    write_jsonl(os.path.join(raw, "multi_turn_func_doc", "gorilla_file_system.json"), FS_DOCS)
    write_jsonl(os.path.join(raw, "multi_turn_func_doc", "math_api.json"), AGENT_MATH_DOCS)
    write_jsonl(os.path.join(raw, "multi_turn_func_doc", "posting_api.json"), POSTING_DOCS)
    write_jsonl(os.path.join(raw, "BFCL_v4_multi_turn_base.json"), [q for q, _ in AGENT_ENTRIES])
    write_jsonl(os.path.join(raw, "possible_answer", "BFCL_v4_multi_turn_base.json"), [a for _, a in AGENT_ENTRIES])
    if simulators:
        os.makedirs(os.path.join(raw, b.SIM_DIR))
        for name, text in FAKE_SIMULATORS.items():
            with open(os.path.join(raw, b.SIM_DIR, name), "w", encoding="utf-8") as f:
                f.write(text)


class AgentTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        write_agent_raw(self.tmp.name)
        self.records, self.stats = b.convert(self.tmp.name, "test-model", ("multi_turn_agent",))
        self.by_id = {r["response"]["id"].removeprefix("chatcmpl-bfcl-"): r for r in self.records}

    def tearDown(self):
        self.tmp.cleanup()

    def test_one_record_per_gold_call(self):
        self.assertEqual(
            list(self.by_id),
            [
                "multi_turn_base_0-turn0-step0",
                "multi_turn_base_0-turn0-step1",
                "multi_turn_base_0-turn1-step0",
                "multi_turn_base_0-turn2-step0",
                "multi_turn_base_0-turn3-step0",
                "multi_turn_base_0-turn4-step0",
                "multi_turn_base_3-turn0-step0",
            ],
        )
        self.assertEqual(self.stats.violations, [])
        self.assertEqual(self.stats.tool_results["multi_turn_agent"], {"ok": 5, "error_raised": 1})
        for r in self.records:
            self.assertEqual(r["metadata"]["bfcl_category"], "multi_turn_agent")
            self.assertEqual(r["metadata"]["history_messages"], str(len(r["request"]["messages"])))
            calls = r["response"]["choices"][0]["message"].get("tool_calls") or []
            self.assertLessEqual(len(calls), 1)

    def test_skipped_entries_say_why(self):
        self.assertEqual(
            dict(self.stats.skip_reasons),
            {
                "multi_turn_agent: MathAPI.logarithm needs mpmath, which the converter does not use": 1,
                "multi_turn_agent: simulator for TwitterAPI unavailable: ModuleNotFoundError:"
                " No module named 'no_such_module_for_this_test'": 1,
            },
        )
        self.assertEqual([s.split(":")[0] for s in self.stats.skipped], ["multi_turn_base_1", "multi_turn_base_2"])
        # the placeholder never leaks out of the converter
        self.assertNotIsInstance(sys.modules.get("mpmath"), b._Placeholder)

    def test_history_and_tool_messages(self):
        r = self.by_id["multi_turn_base_0-turn1-step0"]
        msgs = r["request"]["messages"]
        self.assertEqual(
            [m["role"] for m in msgs], ["system", "user", "assistant", "tool", "assistant", "tool", "user"]
        )
        self.assertEqual(msgs[0], {"role": "system", "content": "You are a shell."})
        self.assertEqual(
            msgs[2],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0_0",
                        "type": "function",
                        "function": {"name": "cd", "arguments": '{"folder": "docs"}'},
                    }
                ],
            },
        )
        # tool results as BFCL writes them: a dict as json.dumps
        self.assertEqual(
            msgs[3],
            {
                "role": "tool",
                "tool_call_id": "call_0_0",
                "content": '{"current_working_directory": "docs", "note": "fake long context"}',
            },
        )
        self.assertEqual(msgs[4]["tool_calls"][0]["id"], "call_0_1")
        self.assertEqual(json.loads(msgs[4]["tool_calls"][0]["function"]["arguments"]), {"file_name": "report.txt"})
        self.assertEqual(msgs[5]["tool_call_id"], "call_0_1")
        self.assertEqual(json.loads(msgs[5]["content"])["sorted_content"], "a b c")
        self.assertEqual(msgs[6], {"role": "user", "content": "Average of 1, 2.5?"})
        (call,) = r["response"]["choices"][0]["message"]["tool_calls"]
        self.assertEqual(call["id"], "call_1_0")
        self.assertEqual(call["function"], {"name": "mean", "arguments": '{"numbers": [1, 2.5]}'})
        self.assertEqual(r["response"]["choices"][0]["finish_reason"], "tool_calls")
        # offered tools as in multi_turn_base: the excluded function stays out
        self.assertEqual([t["function"]["name"] for t in r["request"]["tools"]], ["cd", "sort", "mean", "logarithm"])
        self.assertEqual(
            r["metadata"],
            {
                "source": "bfcl",
                "bfcl_category": "multi_turn_agent",
                "bfcl_id": "multi_turn_base_0",
                "turn": "1",
                "api_class": "MathAPI",
                "involved_classes": "GorillaFileSystem+MathAPI",
                "gold_calls": "1",
                "step": "0",
                "turn_calls": "1",
                "history_messages": "7",
            },
        )

    def test_steps_within_a_turn(self):
        first = self.by_id["multi_turn_base_0-turn0-step0"]
        second = self.by_id["multi_turn_base_0-turn0-step1"]
        self.assertEqual([m["role"] for m in first["request"]["messages"]], ["system", "user"])
        self.assertEqual(second["request"]["messages"][:2], first["request"]["messages"])
        self.assertEqual([m["role"] for m in second["request"]["messages"]], ["system", "user", "assistant", "tool"])
        self.assertEqual(
            second["request"]["messages"][2]["tool_calls"],
            first["response"]["choices"][0]["message"]["tool_calls"],
        )
        self.assertEqual(second["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "sort")
        self.assertEqual(second["metadata"]["step"], "1")
        self.assertEqual(second["metadata"]["turn_calls"], "2")

    def test_error_result_and_empty_turn(self):
        r = self.by_id["multi_turn_base_0-turn3-step0"]
        msgs = r["request"]["messages"]
        self.assertEqual(msgs[-3]["tool_calls"][0]["function"]["arguments"], '{"file_name": "notes.txt"}')
        self.assertEqual(
            msgs[-2], {"role": "tool", "tool_call_id": "call_2_0", "content": '{"error": "no such file: notes.txt"}'}
        )
        self.assertEqual(msgs[-1], {"role": "user", "content": "Send me the invoice."})
        choice = r["response"]["choices"][0]
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(choice["message"], {"role": "assistant", "content": b.EMPTY_TURN_REPLY})
        self.assertEqual(r["metadata"]["gold_empty"], "true")
        self.assertEqual(r["metadata"]["gold_calls"], "0")
        self.assertEqual(r["metadata"]["api_class"], "none")
        # the text answer stays in the history of the next turn
        nxt = self.by_id["multi_turn_base_0-turn4-step0"]["request"]["messages"]
        self.assertEqual(
            nxt[-2:],
            [{"role": "assistant", "content": b.EMPTY_TURN_REPLY}, {"role": "user", "content": "Go back up."}],
        )
        self.assertEqual(len(nxt), 15)

    def test_state_and_seed_are_per_entry(self):
        # the simulator mutated its copy of initial_config, not the entry's
        self.assertEqual(AGENT_ENTRIES[0][0]["initial_config"]["GorillaFileSystem"]["files"], {"report.txt": "b c a"})
        # a class that is offered but never called is not loaded (TwitterAPI cannot be)
        r = self.by_id["multi_turn_base_3-turn0-step0"]
        self.assertEqual([t["function"]["name"] for t in r["request"]["tools"]], ["post_tweet", "cd", "sort", "cp"])
        # the global random is seeded from the entry id while its calls run
        sorted_result = json.loads(self.by_id["multi_turn_base_0-turn1-step0"]["request"]["messages"][5]["content"])
        expected = random.Random(b.entry_seed("multi_turn_base_0")).randint(0, 10**9)
        self.assertEqual(sorted_result["nonce"], expected)

    def test_output_is_deterministic(self):
        random.seed(12345)
        state = random.getstate()
        again, _ = b.convert(self.tmp.name, "test-model", ("multi_turn_agent",))
        self.assertEqual(json.dumps(again), json.dumps(self.records))
        self.assertEqual(random.getstate(), state)  # the caller's random state is left alone

    def test_tool_result_serialisation(self):
        self.assertEqual(b.serialize_tool_result("plain text"), "plain text")
        self.assertEqual(b.serialize_tool_result({"a": [1, "é"]}), '{"a": [1, "\\u00e9"]}')
        self.assertEqual(b.serialize_tool_result(None), "None")
        self.assertEqual(b.serialize_tool_result(["x", 1]), "['x', 1]")
        self.assertEqual(b.serialize_tool_result({"v": {1, 2}}), "{'v': {1, 2}}")


class AgentMissingSimulatorsTest(unittest.TestCase):
    def test_missing_sources_say_how_to_fetch_them(self):
        with tempfile.TemporaryDirectory() as raw:
            write_agent_raw(raw, simulators=False)
            with self.assertRaises(b.SimulatorError) as ctx:
                b.convert(raw, "test-model", ("multi_turn_agent",))
            self.assertIn("scripts/fetch.sh bfcl", str(ctx.exception))
            # the other categories do not need them
            records, _ = b.convert(raw, "test-model", ("multi_turn_base",))
            self.assertEqual(len(records), 8)
            err = io.StringIO()
            out = os.path.join(raw, "out.jsonl")
            with contextlib.redirect_stderr(err):
                rc = b.main(["--raw", raw, "--out", out, "--categories", "multi_turn_agent"])
            self.assertEqual(rc, 2)
            self.assertIn("re-run scripts/fetch.sh bfcl", err.getvalue())
            self.assertFalse(os.path.exists(out))

    def test_agent_category_is_not_in_the_default_file(self):
        # bfcl.jsonl keeps its four categories; the transcripts go to their own file (agent.jsonl)
        self.assertEqual(b.CATEGORIES, ("multi_turn_base", "live_multiple", "live_simple", "simple_python"))
        self.assertIn("multi_turn_agent", b.AGENT_CATEGORIES)


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
