#!/usr/bin/env python3
"""Reference fixtures from llama.cpp (llama-cpp-python) for downshift-slm's parity tests.

Writes
  crates/slm/tests/fixtures/tokenizer_smollm2.jsonl  one {"text", "ids", "ids_no_special"} per line
  crates/slm/tests/fixtures/greedy_smollm2.jsonl     one {"messages", "prompt", "prompt_ids", "tokens", "top"} per line

Usage: bench/slm/.venv/bin/python bench/slm/make_fixtures.py [MODEL.gguf]
"""
import json
import os
import random
import sys

import jinja2
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "crates/slm/tests/fixtures")


def tokenizer_strings():
    s = [
        "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \n", "\n ", " \n \n ", "\r\n", "\r\n\r\n",
        "Hello", "Hello world", " Hello world", "Hello  world", "Hello   world   ", "hello\nworld",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX", "I'm here, you're there, they'll come, we've seen, he'd go, it's OK.",
        "I'M SHOUTING, YOU'RE NOT", "don't DON'T Don't", "'s 't 're 've 'm 'll 'd",
        "0", "1", "12", "123", "1234", "12345", "1234567890", "3.14159", "-42", "+1 (555) 123-4567",
        "1,000,000", "2024-01-15T10:30:00Z", "0x1F3A", "1e-5", "v1.2.3", "$19.99", "100%", "3/4", "10:45pm",
        "def foo(x):\n    return x * 2\n",
        "fn main() {\n    println!(\"hi {}\", 1 + 2);\n}\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
        "<div class=\"x\"><a href='https://example.com/a?b=c&d=e'>link</a></div>",
        "const f = async (a, b) => { await g(a ?? b); };",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
        "    indented\n        more\n            deeper",
        "a\n\n\n\nb", "a        b", "trailing   ", "   leading", " \t mixed \t ",
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
        '{"a":1,"b":[1,2,3],"c":{"d":null,"e":true,"f":false}}',
        '[{"id": 1, "tags": ["x", "y"]}, {"id": 2, "tags": []}]',
        '{\n  "key": "value",\n  "list": [\n    1,\n    2\n  ]\n}',
        "😀", "😀😀", "Hello 👋 world 🌍!", "🇫🇷🇩🇪", "👨‍👩‍👧‍👦", "✓ ✗ ★ ☆ → ← ↑ ↓",
        "你好，世界", "日本語のテキストです。", "한국어 문장입니다", "中文 English 混合 text",
        "Привет, мир!", "Ελληνικά γράμματα", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย",
        "café", "naïve façade", "Crème brûlée à la française", "Ærøskøbing", "Straße", "señor niño",
        "Zürich Köln München", "résumé", "ÀÉÎÕÜ àéîõü", "İstanbul ışık", "ﬁ ligature", "e\u0301 combining",
        "<|im_start|>user\nHi<|im_end|>\n", "<|im_start|>assistant\n", "<|endoftext|>",
        "text<|im_end|>more", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<repo_name>x", "<file_sep>", "<|im_start", "im_start|>",
        "https://github.com/huggingface/smollm", "user@example.com", "C:\\Users\\me\\file.txt", "/usr/local/bin",
        "!!!???...", "--- *** ___ ===", "((()))[[[]]]{{{}}}", "a-b_c.d/e\\f", "~`!@#$%^&*()",
        "........", "--------", "________", "        ", "\n\n\n\n\n\n\n\n", "\t\t\t\t",
        "CamelCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE", "kebab-case-name", "x1y2z3",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abcabcabcabc", "The year 1999 and 2000s.",
        "Mr. Smith's dog's bone", "rock'n'roll", "O'Reilly", "l'homme", "isn't it?",
        "\u00a0nbsp\u00a0", "zero\u200bwidth", "tab\there", "bell\x07", "null\x00byte",
        "Ünïcödé ẞ ǅ ǈ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "½ ¼ ² ³ µ", "Ⅻ ⅷ", "①②③", "ｆｕｌｌｗｉｄｔｈ", "ｱｲｳ",
    ]
    rng = random.Random(5)
    words = ["the", "model", "JSON", "tool_call", "42", "3.5", " ", "\n", "café", "日本", "😀", "don't",
             "  ", "{", "}", "\"key\"", ":", ",", "x", "Paris", "\t", "...", "ÉCOLE", "'ll", "-", "_", "123456"]
    while len(s) < 260:
        n = rng.randint(2, 14)
        parts = [rng.choice(words) for _ in range(n)]
        sep = rng.choice(["", " ", " ", "  ", "\n"])
        s.append(sep.join(parts))
    # numbers of every length, and random printable ASCII
    for n in range(1, 13):
        s.append("".join(str(rng.randint(0, 9)) for _ in range(n)))
    for _ in range(20):
        s.append("".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(5, 40))))
    return s


CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "system", "content": "You are a concise assistant."}, {"role": "user", "content": "List three primary colors."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "What is 12 times 12?"}],
    [{"role": "user", "content": "Give me a JSON object with keys name and age."}],
    [{"role": "user", "content": "Write a Python function that reverses a string."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"}, {"role": "user", "content": "Tell me a fun fact."}],
    [{"role": "user", "content": "Summarize: The cat sat on the mat because it was warm."}],
    [{"role": "user", "content": "Why is the sky blue?"}],
]


def main():
    os.makedirs(OUT, exist_ok=True)
    vocab = llama_cpp.Llama(MODEL, vocab_only=True, verbose=False)
    n = 0
    with open(os.path.join(OUT, "tokenizer_smollm2.jsonl"), "w", encoding="utf-8") as f:
        for text in tokenizer_strings():
            b = text.encode("utf-8")
            ids = vocab.tokenize(b, add_bos=True, special=True)
            plain = vocab.tokenize(b, add_bos=True, special=False)
            f.write(json.dumps({"text": text, "ids": ids, "ids_no_special": plain}, ensure_ascii=False) + "\n")
            n += 1
    print(f"tokenizer fixture: {n} strings")

    template = vocab.metadata["tokenizer.chat_template"]
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    tmpl = env.from_string(template)
    llm = llama_cpp.Llama(MODEL, n_ctx=1024, n_threads=2, n_batch=512, logits_all=False, verbose=False)
    eos = llm.token_eos()
    n_vocab = llm.n_vocab()
    with open(os.path.join(OUT, "greedy_smollm2.jsonl"), "w", encoding="utf-8") as f:
        for messages in CHATS:
            prompt = tmpl.render(messages=messages, add_generation_prompt=True)
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            llm.reset()
            llm.eval(ids)
            tokens, top = [], []
            for _ in range(32):
                ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
                logits = [ptr[i] for i in range(n_vocab)]
                order = sorted(range(len(logits)), key=lambda i: -logits[i])[:5]
                tok = order[0]
                tokens.append(tok)
                top.append([[i, float(logits[i])] for i in order])
                if tok == eos:
                    break
                llm.eval([tok])
            text = llm.detokenize(tokens).decode("utf-8", errors="replace")
            f.write(json.dumps({"messages": messages, "prompt": prompt, "prompt_ids": ids,
                                "tokens": tokens, "text": text, "top": top}, ensure_ascii=False) + "\n")
            print(repr(text))


if __name__ == "__main__":
    main()
