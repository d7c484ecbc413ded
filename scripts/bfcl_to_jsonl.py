#!/usr/bin/env python3
"""Convert the Berkeley Function Calling Leaderboard (BFCL v4) data into downshift's import format.

Each output line is one logged LLM call:

    {"request": <OpenAI chat completion request>,
     "response": <OpenAI chat completion response holding the gold tool calls>,
     "metadata": {<str>: <str>}}

Input is the `bfcl_eval/data/` folder of the `bfcl-eval` wheel (see scripts/fetch.sh). Its `.json`
files are JSON Lines. Gold answers live in `possible_answer/` under the same file name; multi-turn
entries name their tool classes, whose function docs live in `multi_turn_func_doc/`.

`multi_turn_agent` re-reads the `multi_turn_base` entries as agent transcripts: one record per gold
call, the request holding the conversation so far with the results of the earlier gold calls. The
results come from running the gold calls on BFCL's own tool simulators (pure Python classes from
the wheel's `bfcl_eval/eval_checker/multi_turn_eval/func_source_code/`, which scripts/fetch.sh
installs as `<raw>/func_source_code/`).

Standard library only: the simulators' few third-party imports are never used (SIM_THIRD_PARTY);
entries whose gold calls need them are skipped and counted. Usage:

    python3 scripts/bfcl_to_jsonl.py --raw data/bfcl/raw --out data/bfcl/bfcl.jsonl
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib
import json
import os
import random
import re
import sys
import types
from collections import Counter
from typing import Any

CATEGORIES = ("multi_turn_base", "live_multiple", "live_simple", "simple_python")
# Written to their own file by scripts/fetch.sh (data/bfcl/agent.jsonl): `--categories multi_turn_agent`.
FILE_PREFIX = "BFCL_v4_"
DEFAULT_MODEL = "gpt-4o-2024-08-06"
CREATED = 1735689600  # 2025-01-01T00:00:00Z, fixed so the output is reproducible
EMPTY_TURN_REPLY = "I can't complete that request with the tools available."

# BFCL's own class -> func doc file mapping (bfcl_eval/constants/executable_backend_config.py,
# MULTI_TURN_FUNC_DOC_FILE_MAPPING). The data names classes, not files.
CLASS_FUNC_DOC_FILE = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
    "WebSearchAPI": "web_search.json",
    "MemoryAPI_kv": "memory_kv.json",
    "MemoryAPI_vector": "memory_vector.json",
    "MemoryAPI_rec_sum": "memory_rec_sum.json",
}

# Categories read from another category's files: multi_turn_agent replays multi_turn_base.
SOURCE_CATEGORY = {"multi_turn_agent": "multi_turn_base"}
AGENT_CATEGORIES = ("multi_turn_agent",)

# BFCL's tool simulators: class -> module in `func_source_code` (bfcl_eval/constants/
# executable_backend_config.py, CLASS_FILE_PATH_MAPPING under BACKEND_PATH_PREFIX) and the classes
# that take no scenario (STATELESS_CLASSES). The modules import each other by their full name, so
# they are loaded as that package (see Simulators), not as `bfcl_eval` itself.
SIM_DIR = "func_source_code"
SIM_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
CLASS_SIM_MODULE = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
    "WebSearchAPI": "web_search",
    "MemoryAPI_kv": "memory_kv",
    "MemoryAPI_vector": "memory_vector",
    "MemoryAPI_rec_sum": "memory_rec_sum",
}
STATELESS_CLASSES = ("MathAPI",)
# Third-party modules that a simulator module imports, with the functions that use them. They are
# never imported, installed or not, so that the output does not depend on this machine: the module
# is loaded against a placeholder, and an entry whose gold calls use one of those functions is
# skipped (counted by reason). math_api.py imports mpmath for `logarithm` only.
SIM_THIRD_PARTY = {"MathAPI": {"mpmath": ("logarithm",)}}

# BFCL type names -> JSON Schema types. `any` means "no type constraint" (None).
TYPE_MAP = {
    "string": "string",
    "str": "string",
    "char": "string",
    "integer": "integer",
    "int": "integer",
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "ArrayList": "array",
    "Array": "array",
    "Queue": "array",
    "dict": "object",
    "object": "object",
    "HashMap": "object",
    "Hashtable": "object",
    "any": None,
    "null": "null",
}

# JSON Schema keywords kept as they are (properties/items/additionalProperties are recursed into).
PLAIN_KEYWORDS = (
    "description",
    "enum",
    "default",
    "required",
    "format",
    "title",
    "examples",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
)

TOOL_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")


class ConversionError(Exception):
    """An entry that cannot be converted; the message says why."""


class SimulatorUnavailable(ConversionError):
    """An entry whose gold calls need a simulator class that cannot be loaded (counted by reason)."""


class SimulatorError(Exception):
    """The simulator sources are not installed: agent categories cannot be built at all."""


class Stats:
    """Counters collected during a run and printed as the summary."""

    def __init__(self) -> None:
        self.records: Counter = Counter()
        self.entries: Counter = Counter()
        self.tool_calls: Counter = Counter()
        self.calls_per_record: dict[str, Counter] = {}
        self.gold_empty: Counter = Counter()
        self.skipped: list[str] = []
        self.gold_issues: list[str] = []
        self.dropped_schema_keys: Counter = Counter()
        self.type_conversions: Counter = Counter()
        self.renamed_tools: set[tuple[str, str]] = set()
        self.excluded_functions: Counter = Counter()
        self.violations: list[str] = []
        self.skip_reasons: Counter = Counter()
        self.tool_results: dict[str, Counter] = {}


# ---------------------------------------------------------------------------------------------
# Input


def load_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"error: {path}:{lineno}: not JSON: {e}") from e
    return rows


def load_category(raw: str, category: str) -> list[tuple[dict, dict]]:
    """Entries of one category paired with their gold answers (matched by id)."""
    name = f"{FILE_PREFIX}{SOURCE_CATEGORY.get(category, category)}.json"
    questions = load_jsonl(os.path.join(raw, name))
    answers = {a["id"]: a for a in load_jsonl(os.path.join(raw, "possible_answer", name))}
    return [(q, answers.get(q["id"])) for q in questions]


def load_func_docs(raw: str) -> dict[str, list[dict]]:
    docs = {}
    for cls, fname in CLASS_FUNC_DOC_FILE.items():
        path = os.path.join(raw, "multi_turn_func_doc", fname)
        if os.path.exists(path):
            docs[cls] = load_jsonl(path)
    return docs


class _Placeholder(types.ModuleType):
    """Stands in for a third-party module in SIM_THIRD_PARTY; any use of it fails."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise RuntimeError(f"{self.__name__}.{attr}: {self.__name__} is not used by scripts/bfcl_to_jsonl.py")


class Simulators:
    """BFCL's tool simulator classes, imported on demand from `<raw>/func_source_code/`.

    The modules import each other as `bfcl_eval.eval_checker.multi_turn_eval.func_source_code.*`.
    Importing the real `bfcl_eval` package would pull in its dependencies, so that dotted path is
    registered as empty stub packages whose last one points at the installed folder.
    """

    def __init__(self, raw: str) -> None:
        self.path = os.path.abspath(os.path.join(raw, SIM_DIR))
        if not os.path.isdir(self.path):
            raise SimulatorError(
                f"BFCL tool simulator sources not found in {self.path} (multi_turn_agent runs the gold"
                " calls on them); they are installed by a newer scripts/fetch.sh: re-run scripts/fetch.sh bfcl"
            )
        self._classes: dict[str, Any] = {}  # class name -> class, or why it cannot be loaded (str)
        self._register_package()

    def _register_package(self) -> None:
        parts = SIM_PACKAGE.split(".")
        root = sys.modules.get(parts[0])
        if root is not None and not getattr(root, "__downshift_stub__", False):
            raise SimulatorError(f"the real {parts[0]} package is imported in this process; run the converter alone")
        # forget an earlier registration (another raw folder) and every module loaded through it
        for name in [n for n in sys.modules if n == parts[0] or n.startswith(parts[0] + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        parent = None
        for i, part in enumerate(parts):
            name = ".".join(parts[: i + 1])
            module = types.ModuleType(name)
            module.__path__ = [self.path] if i == len(parts) - 1 else []
            module.__package__ = name
            module.__downshift_stub__ = True
            sys.modules[name] = module
            if parent is not None:
                setattr(parent, part, module)
            parent = module

    def _load(self, cls: str) -> Any:
        module_name = CLASS_SIM_MODULE.get(cls)
        if module_name is None:
            return f"no simulator known for class {cls}"
        if not os.path.exists(os.path.join(self.path, module_name + ".py")):
            return f"simulator for {cls} unavailable: {module_name}.py not installed"
        saved = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # keep __pycache__ out of the data folder
        placeholders = {dep: _Placeholder(dep) for dep in SIM_THIRD_PARTY.get(cls, {})}
        shadowed = {dep: sys.modules.get(dep) for dep in placeholders}
        sys.modules.update(placeholders)
        try:
            module = importlib.import_module(f"{SIM_PACKAGE}.{module_name}")
        except Exception as e:  # a third-party module not listed in SIM_THIRD_PARTY, say
            return f"simulator for {cls} unavailable: {type(e).__name__}: {e}"
        finally:
            sys.dont_write_bytecode = saved
            for dep, previous in shadowed.items():
                if previous is None:
                    sys.modules.pop(dep, None)
                else:
                    sys.modules[dep] = previous
        klass = getattr(module, cls, None)
        if not isinstance(klass, type):
            return f"simulator module {module_name} has no class {cls}"
        return klass

    def get(self, cls: str) -> type:
        """The simulator class; SimulatorUnavailable says why it cannot be loaded."""
        if cls not in self._classes:
            self._classes[cls] = self._load(cls)
        klass = self._classes[cls]
        if isinstance(klass, str):
            raise SimulatorUnavailable(klass)
        return klass


# ---------------------------------------------------------------------------------------------
# Tool schemas


def sanitize_tool_name(name: str) -> str:
    """OpenAI tool names must match ^[a-zA-Z0-9_-]{1,64}$; BFCL replaces the rest with `_`."""
    return TOOL_NAME_RE.sub("_", name)


def convert_schema(schema: Any, stats: Stats | None = None, path: str = "") -> dict:
    """A BFCL (python-typed) parameter schema as valid JSON Schema."""
    if not isinstance(schema, dict):
        raise ConversionError(f"schema at {path or '<root>'} is not an object: {schema!r}")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if isinstance(value, list):
                mapped = [TYPE_MAP[v] for v in value if TYPE_MAP.get(v)]
                if len(mapped) != len(value):
                    raise ConversionError(f"unknown type {value!r} at {path or '<root>'}")
                out["type"] = mapped
                continue
            if value not in TYPE_MAP:
                raise ConversionError(f"unknown type {value!r} at {path or '<root>'}")
            mapped = TYPE_MAP[value]
            if stats is not None and mapped != value:
                stats.type_conversions[f"{value}->{mapped or '(no type)'}"] += 1
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties":
            if not isinstance(value, dict):
                raise ConversionError(f"properties at {path or '<root>'} is not an object")
            out["properties"] = {k: convert_schema(v, stats, f"{path}.{k}" if path else k) for k, v in value.items()}
        elif key == "items":
            if isinstance(value, list):  # tuple-style items
                out["prefixItems"] = [convert_schema(v, stats, f"{path}[{i}]") for i, v in enumerate(value)]
            else:
                out["items"] = convert_schema(value, stats, f"{path}[]")
        elif key == "additionalProperties":
            out[key] = convert_schema(value, stats, f"{path}{{}}") if isinstance(value, dict) else value
        elif key in PLAIN_KEYWORDS:
            out[key] = copy.deepcopy(value)
        elif stats is not None:
            stats.dropped_schema_keys[key] += 1
    # BFCL puts the allowed item values of a list on the list itself; in JSON Schema an `enum`
    # there would constrain the whole array, so it belongs to `items`.
    if (
        out.get("type") == "array"
        and "enum" in out
        and isinstance(out.get("items"), dict)
        and "enum" not in out["items"]
    ):
        out["items"]["enum"] = out.pop("enum")
        if stats is not None:
            stats.type_conversions["array enum->items.enum"] += 1
    return out


def convert_tool(func: dict, stats: Stats | None = None) -> dict:
    """One BFCL function doc as an OpenAI `tools` entry."""
    name = func.get("name")
    if not isinstance(name, str) or not name:
        raise ConversionError(f"function without a name: {func!r:.200}")
    params = func.get("parameters") or {"type": "dict", "properties": {}}
    parameters = convert_schema(params, stats, "")
    parameters["type"] = "object"
    parameters.setdefault("properties", {})
    new_name = sanitize_tool_name(name)
    if stats is not None:
        if new_name != name:
            stats.renamed_tools.add((name, new_name))
        for k in func:
            if k not in ("name", "description", "parameters"):
                stats.dropped_schema_keys[f"function.{k}"] += 1
    if len(new_name) > 64:
        raise ConversionError(f"tool name longer than 64 characters: {new_name}")
    function = {"name": new_name, "description": func.get("description", ""), "parameters": parameters}
    return {"type": "function", "function": function}


def convert_tools(funcs: list[dict], stats: Stats | None = None) -> list[dict]:
    tools = [convert_tool(f, stats) for f in funcs]
    seen: dict[str, str] = {}
    for f, t in zip(funcs, tools, strict=True):
        n = t["function"]["name"]
        if n in seen and seen[n] != f["name"]:
            raise ConversionError(f"tool names {seen[n]!r} and {f['name']!r} both become {n!r}")
        if n in seen:
            raise ConversionError(f"tool {n!r} offered twice")
        seen[n] = f["name"]
    return tools


def toolset_id(tool_names: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(tool_names)).encode("utf-8")).hexdigest()
    return "ts-" + digest[:10]


# ---------------------------------------------------------------------------------------------
# Gold answers


def _pick(acceptable: Any, required: bool, where: str, issues: list[str]) -> tuple[bool, Any]:
    """First acceptable value; (False, None) when the parameter is to be left out.

    BFCL lists every acceptable value; `""` means "may be absent". A required parameter whose
    first acceptable value is `""` takes the first real value instead (the call would otherwise
    not match its own schema); an empty list of acceptable values for a list parameter means `[]`.
    """
    if not isinstance(acceptable, list):
        issues.append(f"not_a_value_list:{where}")
        return True, acceptable
    if not acceptable:
        issues.append(f"no_acceptable_value_used_empty_list:{where}")
        return True, []
    first = acceptable[0]
    if isinstance(first, str) and first == "":
        if required:
            for v in acceptable[1:]:
                if not (isinstance(v, str) and v == ""):
                    issues.append(f"required_marked_optional:{where}")
                    return True, v
            issues.append(f"required_without_value:{where}")
        return False, None
    return True, first


def _resolve_nested_dict(value: dict, schema: dict, where: str, issues: list[str]) -> dict:
    """A dict-typed argument: BFCL lists acceptable values per key (one level deep)."""
    required = set(schema.get("required") or [])
    out = {}
    for k, acceptable in value.items():
        keep, v = _pick(acceptable, k in required, f"{where}.{k}", issues)
        if keep:
            out[k] = v
    return out


def resolve_ast_call(call: dict, func: dict | None, issues: list[str]) -> tuple[str, dict]:
    """A live/simple gold call `{name: {param: [acceptable values]}}` as (name, arguments)."""
    if not isinstance(call, dict) or len(call) != 1:
        raise ConversionError(f"gold call is not a one-key object: {call!r:.200}")
    ((name, params),) = call.items()
    if not isinstance(params, dict):
        raise ConversionError(f"gold arguments of {name} are not an object")
    schema = (func or {}).get("parameters") or {}
    props = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    args: dict[str, Any] = {}
    unknown = []
    for p, acceptable in params.items():
        prop = props.get(p)
        keep, v = _pick(acceptable, p in required, f"{name}.{p}", issues)
        if not keep:
            continue
        ptype = (prop or {}).get("type")
        if ptype == "dict" and isinstance(v, dict):
            v = _resolve_nested_dict(v, prop, f"{name}.{p}", issues)
        elif (
            ptype == "array"
            and isinstance(v, list)
            and ((prop or {}).get("items") or {}).get("type") == "dict"
            and all(isinstance(x, dict) for x in v)
        ):
            v = [_resolve_nested_dict(x, prop["items"], f"{name}.{p}[{i}]", issues) for i, x in enumerate(v)]
        if prop is None and func is not None:
            unknown.append(p)
        args[p] = v
    if unknown:
        missing = [r for r in required if r not in args]
        if len(unknown) == 1 and len(missing) == 1:
            # a renamed parameter (gold written against an older schema): follow the schema
            args[missing[0]] = args.pop(unknown[0])
            issues.append(f"renamed_param:{name}.{unknown[0]}->{missing[0]}")
        else:
            for p in unknown:
                del args[p]
                issues.append(f"dropped_unknown_param:{name}.{p}")
    return name, args


def parse_python_call(text: str, param_order: dict[str, list[str]]) -> tuple[str, dict]:
    """A python call string like `cd(folder='document')` as (name, arguments).

    Only literal arguments are accepted. Positional arguments are mapped to parameter names in
    the order of the function's schema (`param_order[name]`).
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ConversionError(f"gold call {text!r} is not python: {e.msg}") from e
    if not isinstance(node, ast.Call):
        raise ConversionError(f"gold call {text!r} is not a call")
    parts = []
    f = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if not isinstance(f, ast.Name):
        raise ConversionError(f"gold call {text!r}: callee is not a name")
    parts.append(f.id)
    name = ".".join(reversed(parts))
    order = param_order.get(name)
    if order is None:
        raise ConversionError(f"gold call {text!r}: unknown function {name!r}")
    args: dict[str, Any] = {}
    try:
        if len(node.args) > len(order):
            raise ConversionError(f"gold call {text!r}: {len(node.args)} positional arguments, schema has {len(order)}")
        for pname, a in zip(order, node.args, strict=False):
            if isinstance(a, ast.Starred):
                raise ConversionError(f"gold call {text!r}: starred argument")
            args[pname] = ast.literal_eval(a)
        for kw in node.keywords:
            if kw.arg is None:
                raise ConversionError(f"gold call {text!r}: **kwargs")
            if kw.arg in args:
                raise ConversionError(f"gold call {text!r}: argument {kw.arg!r} given twice")
            args[kw.arg] = ast.literal_eval(kw.value)
    except ValueError as e:
        raise ConversionError(f"gold call {text!r}: argument is not a literal") from e
    return name, _jsonable(args)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        return [_jsonable(x) for x in sorted(v, key=repr)]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, complex):
        raise ConversionError(f"complex value {v!r}")
    return v


# ---------------------------------------------------------------------------------------------
# Records


_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def schema_mismatches(value: Any, schema: dict, path: str) -> list[str]:
    """Where a gold argument disagrees with its (converted) schema: type, enum, required, unknown key.

    These are BFCL's own inconsistencies; they are reported and tagged, never "fixed".
    """
    out: list[str] = []
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    if types and not any(_JSON_TYPES[x](value) for x in types if x in _JSON_TYPES):
        return [f"schema_type:{path}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"schema_enum:{path}")
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        for r in schema.get("required") or []:
            if r not in value:
                out.append(f"schema_required:{path}.{r}")
        for k, v in value.items():
            if k in props:
                out.extend(schema_mismatches(v, props[k], f"{path}.{k}"))
            elif props or schema.get("additionalProperties") is False:
                out.append(f"schema_unknown_key:{path}.{k}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out.extend(schema_mismatches(v, schema["items"], f"{path}[{i}]"))
    return out


def call_issues(tools: list[dict], calls: list[tuple[str, dict]]) -> list[str]:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    out: list[str] = []
    for name, args in calls:
        if name in by_name:
            out.extend(schema_mismatches(args, by_name[name], name))
    return out


def sanitize_id(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def build_record(
    *,
    model: str,
    record_id: str,
    messages: list[dict],
    tools: list[dict],
    calls: list[tuple[str, dict]],
    metadata: dict[str, str],
    call_ids: list[str] | None = None,
) -> dict:
    request = {"model": model, "messages": messages, "tools": tools, "tool_choice": "auto"}
    if call_ids is None:
        call_ids = [f"call_{i}" for i in range(len(calls))]
    if calls:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
                }
                for call_id, (name, args) in zip(call_ids, calls, strict=True)
            ],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": EMPTY_TURN_REPLY}
        finish = "stop"
    response = {
        "id": f"chatcmpl-bfcl-{sanitize_id(record_id)}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    meta = {str(k): str(v) for k, v in metadata.items()}
    return {"request": request, "response": response, "metadata": meta}


def _messages(turn: list[dict], where: str) -> list[dict]:
    out = []
    for m in turn:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ConversionError(f"{where}: unexpected message {m!r:.200}")
        out.append({"role": m["role"], "content": m.get("content", "")})
    return out


def convert_single_turn(category: str, entry: dict, answer: dict | None, model: str, stats: Stats) -> list[dict]:
    """live_multiple, live_simple, simple_python: one record per entry."""
    eid = entry["id"]
    if answer is None:
        raise ConversionError("no gold answer")
    question = entry.get("question") or []
    if len(question) != 1:
        raise ConversionError(f"{len(question)} turns, expected 1")
    messages = _messages(question[0], eid)
    if not any(m["role"] == "user" for m in messages):
        raise ConversionError("no user message")
    funcs = entry.get("function") or []
    if not funcs:
        raise ConversionError("no functions offered")
    tools = convert_tools(funcs, stats)
    by_name = {f["name"]: f for f in funcs}
    gold = answer.get("ground_truth")
    if not isinstance(gold, list):
        raise ConversionError("ground_truth is not a list")
    issues: list[str] = []
    calls = []
    for call in gold:
        name, args = resolve_ast_call(
            call, by_name.get(next(iter(call)) if isinstance(call, dict) and call else None), issues
        )
        calls.append((sanitize_tool_name(name), args))
    meta: dict[str, str] = {"source": "bfcl", "bfcl_category": category, "bfcl_id": eid}
    if category == "live_multiple":
        names = [t["function"]["name"] for t in tools]
        meta["toolset"] = toolset_id(names)
        meta["toolset_size"] = str(len(names))
    else:
        meta["function"] = "+".join(sorted({n for n, _ in calls})) if calls else "none"
    meta["gold_calls"] = str(len(calls))
    if not calls:
        meta["gold_empty"] = "true"
        stats.gold_empty[category] += 1
    issues.extend(i for i in call_issues(tools, calls) if i not in issues)
    if issues:
        meta["gold_issue"] = ";".join(issues)
        stats.gold_issues.extend(f"{eid}: {i}" for i in issues)
    return [build_record(model=model, record_id=eid, messages=messages, tools=tools, calls=calls, metadata=meta)]


def _multi_turn_functions(
    entry: dict, docs: dict[str, list[dict]], stats: Stats
) -> tuple[list[str], list[dict], dict[str, str], set[str], dict[int, set[str]], dict[str, list[str]]]:
    """The functions of a multi-turn entry's classes: (classes, funcs, owner class by function
    name, excluded names, held-out names by turn, parameter order by function name)."""
    classes = entry.get("involved_classes") or []
    if not classes:
        raise ConversionError("no involved_classes")
    funcs: list[dict] = []
    owner: dict[str, str] = {}
    for cls in classes:
        if cls not in docs:
            raise ConversionError(f"no func doc for class {cls!r} (known: {', '.join(sorted(docs))})")
        for f in docs[cls]:
            if f["name"] in owner:
                raise ConversionError(f"function {f['name']!r} in both {owner[f['name']]} and {cls}")
            owner[f["name"]] = cls
            funcs.append(f)
    excluded = set(entry.get("excluded_function") or [])
    for name in sorted(excluded):
        if name not in owner:
            raise ConversionError(f"excluded function {name!r} is not in {'+'.join(classes)}")
        stats.excluded_functions[name] += 1
    # missed_function: {turn: [names]}: held out of the tool list until that turn (BFCL miss_func)
    missed = {int(k): set(v) for k, v in (entry.get("missed_function") or {}).items()}
    param_order = {f["name"]: list((f.get("parameters") or {}).get("properties") or {}) for f in funcs}
    return classes, funcs, owner, excluded, missed, param_order


def _offered(funcs: list[dict], excluded: set[str], missed: dict[int, set[str]], t: int) -> list[dict]:
    """The functions offered in turn t: not excluded and not held out until a later turn."""
    held_out = set().union(*(names for k, names in missed.items() if k > t)) if missed else set()
    return [f for f in funcs if f["name"] not in excluded and f["name"] not in held_out]


def tag_gold(meta: dict, category: str, record_id: str, tools: list[dict], calls: list, stats: Stats) -> None:
    """Marks a record whose gold answer is empty or disagrees with the offered tools' schemas."""
    if not calls:
        meta["gold_empty"] = "true"
        stats.gold_empty[category] += 1
    issues = call_issues(tools, calls)
    if issues:
        meta["gold_issue"] = ";".join(issues)
        stats.gold_issues.extend(f"{record_id}: {i}" for i in issues)


def convert_multi_turn(
    category: str, entry: dict, answer: dict | None, model: str, docs: dict[str, list[dict]], stats: Stats
) -> list[dict]:
    """multi_turn_*: one record per user turn; the request holds that turn only."""
    eid = entry["id"]
    if answer is None:
        raise ConversionError("no gold answer")
    classes, funcs, owner, excluded, missed, param_order = _multi_turn_functions(entry, docs, stats)

    system = []
    question = entry.get("question") or []
    gold = answer.get("ground_truth")
    if not isinstance(gold, list) or len(gold) != len(question):
        raise ConversionError(f"{len(question)} turns but {len(gold) if isinstance(gold, list) else 'no'} gold turns")
    involved = "+".join(sorted(classes))
    records = []
    for t, (turn, turn_gold) in enumerate(zip(question, gold, strict=True)):
        msgs = _messages(turn, f"{eid} turn {t}")
        if t == 0:
            system = [m for m in msgs if m["role"] == "system"]
            msgs = [m for m in msgs if m["role"] != "system"]
        user = [m for m in msgs if m["role"] == "user"]
        if len(user) != len(msgs):
            raise ConversionError(f"turn {t} holds non-user messages")
        if not msgs:
            # multi_turn_miss_func: the turn where held-out functions come back carries no new
            # user message; without the earlier history it is no standalone request.
            stats.skipped.append(f"{eid}: turn {t} has no user message (continuation turn), turn skipped")
            continue
        if not user:
            raise ConversionError(f"turn {t} has no user message")
        tools = convert_tools(_offered(funcs, excluded, missed, t), stats)
        calls = []
        called_classes = set()
        for text in turn_gold:
            name, args = parse_python_call(text, param_order)
            calls.append((sanitize_tool_name(name), args))
            called_classes.add(owner[name])
        record_id = f"{eid}-turn{t}"
        meta = {
            "source": "bfcl",
            "bfcl_category": category,
            "bfcl_id": eid,
            "turn": str(t),
            "api_class": "+".join(sorted(called_classes)) if called_classes else "none",
            "involved_classes": involved,
            "gold_calls": str(len(calls)),
        }
        tag_gold(meta, category, record_id, tools, calls, stats)
        records.append(
            build_record(
                model=model, record_id=record_id, messages=system + user, tools=tools, calls=calls, metadata=meta
            )
        )
    return records


def entry_seed(entry_id: str) -> int:
    """A fixed seed per entry for the global `random` while its simulators run."""
    return int.from_bytes(hashlib.sha256(entry_id.encode("utf-8")).digest()[:8], "big")


def serialize_tool_result(value: Any) -> str:
    """A simulator's return value as BFCL's executor writes it into the conversation
    (multi_turn_utils.execute_multi_turn_func_call): str as is, dict as JSON, anything else str()."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def run_simulator_call(instance: Any, name: str, args: dict) -> tuple[str, str]:
    """Call one method of a simulator instance: (serialized result, outcome).

    outcome is `ok`, `error_returned` (the simulator answered {"error": ...}) or `error_raised`
    (the call raised; the result is then {"error": "<message>"}).
    """
    method = getattr(instance, name, None) if not name.startswith("_") else None
    if not callable(method):
        return serialize_tool_result({"error": f"{type(instance).__name__} has no function {name}"}), "error_raised"
    try:
        value = method(**copy.deepcopy(args))
    except Exception as e:  # BFCL turns any exception of a call into an error result
        return serialize_tool_result({"error": str(e)}), "error_raised"
    outcome = "error_returned" if isinstance(value, dict) and "error" in value else "ok"
    return serialize_tool_result(value), outcome


def convert_multi_turn_agent(
    category: str,
    entry: dict,
    answer: dict | None,
    model: str,
    docs: dict[str, list[dict]],
    sims: Simulators,
    stats: Stats,
) -> list[dict]:
    """multi_turn_agent: one record per gold call; the request holds the conversation so far.

    The gold calls run, in order, on BFCL's simulator classes loaded with the entry's
    initial_config, and every earlier call appears in the history as an assistant message with
    one tool call followed by a `tool` message holding its result. A turn without gold calls is
    one record answered with EMPTY_TURN_REPLY, which then stays in the history.
    """
    eid = entry["id"]
    if answer is None:
        raise ConversionError("no gold answer")
    classes, funcs, owner, excluded, missed, param_order = _multi_turn_functions(entry, docs, stats)
    question = entry.get("question") or []
    gold = answer.get("ground_truth")
    if not isinstance(gold, list) or len(gold) != len(question):
        raise ConversionError(f"{len(question)} turns but {len(gold) if isinstance(gold, list) else 'no'} gold turns")
    # every gold call is parsed (and every simulator it needs loaded) before anything runs
    parsed = [[parse_python_call(text, param_order) for text in turn_gold] for turn_gold in gold]
    called = {owner[name] for turn_calls in parsed for name, _ in turn_calls}
    for name in sorted({name for turn_calls in parsed for name, _ in turn_calls}):
        for dep, users in SIM_THIRD_PARTY.get(owner[name], {}).items():
            if name in users:
                raise SimulatorUnavailable(f"{owner[name]}.{name} needs {dep}, which the converter does not use")
    simulator_classes = {cls: sims.get(cls) for cls in classes if cls in called}
    initial_config = entry.get("initial_config") or {}
    involved = "+".join(sorted(classes))
    results = stats.tool_results.setdefault(category, Counter())

    saved_random = random.getstate()
    random.seed(entry_seed(eid))
    try:
        instances = {}
        for cls, klass in simulator_classes.items():
            try:
                instance = klass()
                if cls not in STATELESS_CLASSES:
                    instance._load_scenario(copy.deepcopy(initial_config.get(cls, {})), long_context=False)
            except Exception as e:
                raise ConversionError(f"simulator {cls} cannot load the entry's initial_config: {e}") from e
            instances[cls] = instance

        history: list[dict] = []
        records = []
        for t, (turn, calls) in enumerate(zip(question, parsed, strict=True)):
            msgs = _messages(turn, f"{eid} turn {t}")
            if t == 0:
                history.extend(m for m in msgs if m["role"] == "system")
                msgs = [m for m in msgs if m["role"] != "system"]
            user = [m for m in msgs if m["role"] == "user"]
            if len(user) != len(msgs):
                raise ConversionError(f"turn {t} holds non-user messages")
            if not user:
                raise ConversionError(f"turn {t} has no user message")
            history.extend(user)
            tools = convert_tools(_offered(funcs, excluded, missed, t), stats)
            for k, (name, args) in enumerate(calls or [(None, {})]):
                record_id = f"{eid}-turn{t}-step{k}"
                step_calls = [] if name is None else [(sanitize_tool_name(name), args)]
                meta = {
                    "source": "bfcl",
                    "bfcl_category": category,
                    "bfcl_id": eid,
                    "turn": str(t),
                    "api_class": owner[name] if name is not None else "none",
                    "involved_classes": involved,
                    "gold_calls": str(len(step_calls)),  # in this response: 1, or 0 for a text answer
                    "step": str(k),
                    "turn_calls": str(len(calls)),  # gold calls of the whole turn
                    "history_messages": str(len(history)),  # = len(request.messages)
                }
                tag_gold(meta, category, record_id, tools, step_calls, stats)
                record = build_record(
                    model=model,
                    record_id=record_id,
                    messages=list(history),
                    tools=tools,
                    calls=step_calls,
                    metadata=meta,
                    call_ids=[f"call_{t}_{k}"] if step_calls else None,
                )
                records.append(record)
                history.append(copy.deepcopy(record["response"]["choices"][0]["message"]))
                if name is None:
                    continue
                content, outcome = run_simulator_call(instances[owner[name]], name, args)
                results[outcome] += 1
                history.append({"role": "tool", "tool_call_id": f"call_{t}_{k}", "content": content})
        return records
    finally:
        random.setstate(saved_random)


def check_record(record: dict) -> list[str]:
    """Hard invariants: every arguments string is a JSON object, every called tool is offered."""
    problems = []
    offered = {t["function"]["name"] for t in record["request"]["tools"]}
    rid = record["response"]["id"]
    for choice in record["response"]["choices"]:
        for tc in choice["message"].get("tool_calls") or []:
            name = tc["function"]["name"]
            if name not in offered:
                problems.append(f"{rid}: calls {name!r}, which is not among the offered tools")
            try:
                args = json.loads(tc["function"]["arguments"])
            except json.JSONDecodeError as e:
                problems.append(f"{rid}: arguments of {name!r} are not JSON: {e}")
                continue
            if not isinstance(args, dict):
                problems.append(f"{rid}: arguments of {name!r} are not a JSON object")
    for k, v in record["metadata"].items():
        if not isinstance(k, str) or not isinstance(v, str):
            problems.append(f"{rid}: metadata {k!r} is not a string pair")
    return problems


def convert(
    raw: str, model: str, categories: tuple[str, ...] = CATEGORIES, stats: Stats | None = None
) -> tuple[list[dict], Stats]:
    stats = stats or Stats()
    docs = load_func_docs(raw)
    sims = Simulators(raw) if any(c in AGENT_CATEGORIES for c in categories) else None
    records: list[dict] = []
    for category in categories:
        pairs = load_category(raw, category)
        stats.calls_per_record[category] = Counter()
        for entry, answer in pairs:
            stats.entries[category] += 1
            try:
                if category in AGENT_CATEGORIES:
                    out = convert_multi_turn_agent(category, entry, answer, model, docs, sims, stats)
                elif category.startswith("multi_turn"):
                    out = convert_multi_turn(category, entry, answer, model, docs, stats)
                else:
                    out = convert_single_turn(category, entry, answer, model, stats)
            except ConversionError as e:
                stats.skipped.append(f"{entry.get('id', '?')}: {e}")
                if isinstance(e, SimulatorUnavailable):
                    stats.skip_reasons[f"{category}: {e}"] += 1
                continue
            for r in out:
                problems = check_record(r)
                if problems:
                    stats.violations.extend(problems)
                    continue
                n = len(r["response"]["choices"][0]["message"].get("tool_calls") or [])
                stats.records[category] += 1
                stats.tool_calls[category] += n
                stats.calls_per_record[category][n] += 1
                records.append(r)
    return records, stats


def print_summary(stats: Stats, out_path: str, file=sys.stderr) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"bfcl_to_jsonl: wrote {sum(stats.records.values())} records to {out_path}")
    p(f"  {'category':<18} {'entries':>7} {'records':>7} {'calls':>6} {'empty':>6}  calls/record")
    for cat in stats.entries:
        hist = ", ".join(f"{k}:{v}" for k, v in sorted(stats.calls_per_record.get(cat, {}).items()))
        p(
            f"  {cat:<18} {stats.entries[cat]:>7} {stats.records[cat]:>7} {stats.tool_calls[cat]:>6}"
            f" {stats.gold_empty[cat]:>6}  {hist}"
        )
    if stats.type_conversions:
        p("  schema types converted: " + ", ".join(f"{k} x{v}" for k, v in sorted(stats.type_conversions.items())))
    if stats.dropped_schema_keys:
        p("  schema keys dropped: " + ", ".join(f"{k} x{v}" for k, v in sorted(stats.dropped_schema_keys.items())))
    if stats.renamed_tools:
        p(f"  tool names rewritten for OpenAI (e.g. '.' -> '_'): {len(stats.renamed_tools)} distinct")
    if stats.excluded_functions:
        p(
            "  excluded_function honoured (left out of tools): "
            + ", ".join(f"{k} x{v}" for k, v in sorted(stats.excluded_functions.items()))
        )
    p(f"  gold fixes/issues (tagged as metadata gold_issue): {len(stats.gold_issues)}")
    for line in stats.gold_issues:
        p(f"    {line}")
    for cat, outcomes in stats.tool_results.items():
        p(f"  {cat} gold calls run on the simulators: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    p(f"  skipped entries: {len(stats.skipped)}")
    for reason, n in sorted(stats.skip_reasons.items()):
        p(f"    {n} x {reason}")
    for line in stats.skipped:
        p(f"    {line}")
    p(f"  violations (record dropped): {len(stats.violations)}")
    for line in stats.violations:
        p(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw", default="data/bfcl/raw", help="extracted bfcl_eval/data folder")
    ap.add_argument("--out", default="data/bfcl/bfcl.jsonl", help="output JSON Lines file")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name written into request and response")
    ap.add_argument(
        "--categories",
        default=",".join(CATEGORIES),
        help=f"comma-separated BFCL categories (default: {','.join(CATEGORIES)})",
    )
    args = ap.parse_args(argv)
    categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    for c in categories:
        path = os.path.join(args.raw, f"{FILE_PREFIX}{SOURCE_CATEGORY.get(c, c)}.json")
        if not os.path.exists(path):
            print(f"error: {path} not found (run scripts/fetch.sh bfcl)", file=sys.stderr)
            return 2
    try:
        records, stats = convert(args.raw, args.model, categories)
    except SimulatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
    os.replace(tmp, args.out)
    print_summary(stats, args.out)
    return 1 if stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())
