#!/usr/bin/env python3
"""Reference fixtures from llama.cpp (llama-cpp-python) for downshift-slm's Gemma 3 parity tests.

Writes
  crates/slm/tests/fixtures/tokenizer_gemma3.jsonl  one {"text", "ids", "ids_no_special"} per line
  crates/slm/tests/fixtures/greedy_gemma3.jsonl     one {"messages", "prompt", "prompt_ids", "tokens", "top"} per line

The strings are make_fixtures.py's (whitespace runs, code, numbers, emoji, JSON, scripts) plus
SentencePiece-specific ones (U+2581 in the text, byte fallback, Gemma's turn markup, its
user-defined HTML and whitespace tokens). The Gemma 3 GGUF has no chat template, so prompts are
rendered with GEMMA_TEMPLATE below: Gemma's own (system folded into the first user turn), which
downshift's `chat::GEMMA_TEMPLATE` must reproduce byte for byte.

Usage: bench/slm/.venv/bin/python bench/slm/make_gemma_fixtures.py [MODEL.gguf]
"""
import json
import os
import random
import sys

import jinja2
import llama_cpp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CHATS, tokenizer_strings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, os.environ.get("DOWNSHIFT_MODELS_DIR", "models"), "gemma-3-270m/gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "crates/slm/tests/fixtures")

# Gemma 3's chat template as Hugging Face ships it, text content only (no BOS: the tokenizer adds it)
GEMMA_TEMPLATE = """{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = "" -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if message['role'] == 'assistant' -%}{%- set role = "model" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"""


def gemma_strings():
    s = [
        "\u2581", "\u2581\u2581", "a\u2581b", "\u2581leading marker", "word\u2581", " \u2581 ",
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
        "<start_of_turn>", "<end_of_turn>", "<start_of_turn>model", "text<end_of_turn>more", "<start_of_turn",
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "</s>", "a</s>b", "<s>", "<unused0>", "<unused99>x",
        "[multimodal]", "<start_of_image>", "<end_of_image>", "<image_soft_token>",
        "<table><tr><td>1</td></tr></table>", "<h1>Title</h1><p>para</p>", "<b>bold</b> <i>it</i>",
        "a  b", "a   b", "a    b", "a" + " " * 31 + "b", " " * 40, "\t" * 12, "\n" * 40, "x\r\ny\r\n",
        "\x01\x02\x1f control", "\x7f del", "\u0300 lone combining", "\ufffd replacement", "\U0001F9EC dna",
        "\U00010348 gothic", "\U0001D11E clef", "\uE000 private use", "\u200d zwj", "\u2028 line sep",
        "Dans l'été, nous étions à Montréal.", "Él está aquí, ¿verdad? ¡Sí!", "Ça coûte 3,50 €.",
        "Gemma kann auch Deutsch: Übermäßig große Äpfel.", "Język polski: zażółć gęślą jaźń.",
        "Türkçe: çok güzel, değil mi?", "Tiếng Việt có dấu: Hà Nội", "Kiswahili: habari ya asubuhi",
        "Bahasa Indonesia: selamat pagi", "Nederlands: één twee drie", "Português: ação, coração",
        "Русский: съешь же ещё этих мягких французских булок", "Українська: ґанок, їжак, єнот",
        "Ελληνικά: Καλημέρα κόσμε", "עברית: בוקר טוב", "العربية: صباح الخير يا عالم", "فارسی: سلام دنیا",
        "हिन्दी: नमस्ते दुनिया", "বাংলা: হ্যালো বিশ্ব", "தமிழ்: வணக்கம் உலகம்", "తెలుగు: హలో ప్రపంచం",
        "ไทย: สวัสดีชาวโลก", "ქართული: გამარჯობა", "Հայերեն: բարեւ աշխարհ", "አማርኛ: ሰላም ዓለም",
        "中文：你好，世界！今天天气很好。", "繁體中文：請問洗手間在哪裡？", "日本語：東京は大きな都市です。カタカナ、ひらがな。",
        "한국어: 안녕하세요, 세계!", "Монгол: Сайн байна уу", "ខ្មែរ: សួស្តី", "ລາວ: ສະບາຍດີ", "မြန်မာ: မင်္ဂလာပါ",
        "𠀀𠀁 rare CJK", "mixed: Hello世界مرحباПривет😀", "emoji seq: 👩🏽‍💻 🏳️‍🌈 ❤️‍🔥 1️⃣",
        "math: ∀x∈ℝ, ∃y: x² + y² = z² ⇒ √(z) ≥ 0", "arrows ⟶ ⟵ ⇄ ↯", "box ┌─┐│└┘ ░▒▓█",
        "fn gemma<'a>(x: &'a str) -> Option<&'a str> { x.strip_prefix(\"▁\") }",
        "SELECT  *  FROM t  WHERE  a = 'x  y';", "    def f(self):\n        return {'k': [1, 2, 3]}\n",
        "<?php echo \"hi\"; ?>", "$ ls -la | grep '^d' && echo done", "1234567890123456789012345678901234567890",
        "3.141592653589793238462643383279", "1,234,567.89 -0.001 +1e+10 0b1010 0o17 0xDEADbeef",
        "IPv6 2001:0db8:85a3::8a2e:0370:7334", "2026-12-07 21:40:00 UTC", "#ff00aa rgb(255, 0, 170)",
    ]
    rng = random.Random(25)
    pieces = ["▁", " ", "  ", "\n", "\t", "é", "ß", "日本", "😀", "<start_of_turn>", "<end_of_turn>", "ab",
              "Gemma", "tool_call", "{\"x\": 1}", "42", "…", "—", "·", "ℕ", "\u00a0", "<b>", "</s>", "<0x41>"]
    for _ in range(60):
        s.append("".join(rng.choice(pieces) for _ in range(rng.randint(2, 12))))
    for _ in range(20):
        s.append("".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f),
                                         rng.randint(0x400, 0x4ff), rng.randint(0x4e00, 0x9fff),
                                         rng.randint(0x1f300, 0x1f64f)])) for _ in range(rng.randint(3, 30))))
    return s


GEMMA_CHATS = CHATS + [
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "What colour is grass?"}],
    [{"role": "user", "content": "Complete: The quick brown fox"}],
]


def main():
    os.makedirs(OUT, exist_ok=True)
    vocab = llama_cpp.Llama(MODEL, vocab_only=True, verbose=False)
    strings = tokenizer_strings() + gemma_strings()
    with open(os.path.join(OUT, "tokenizer_gemma3.jsonl"), "w", encoding="utf-8") as f:
        for text in strings:
            b = text.encode("utf-8")
            ids = vocab.tokenize(b, add_bos=True, special=True)
            plain = vocab.tokenize(b, add_bos=True, special=False)
            f.write(json.dumps({"text": text, "ids": ids, "ids_no_special": plain}, ensure_ascii=False) + "\n")
    print(f"tokenizer fixture: {len(strings)} strings")

    tmpl = jinja2.Environment(loader=jinja2.BaseLoader()).from_string(GEMMA_TEMPLATE)
    llm = llama_cpp.Llama(MODEL, n_ctx=1024, n_threads=2, n_batch=512, logits_all=False, verbose=False)
    n_vocab = llm.n_vocab()
    vocab_ptr = llama_cpp.llama_model_get_vocab(llm._model.model)
    with open(os.path.join(OUT, "greedy_gemma3.jsonl"), "w", encoding="utf-8") as f:
        for messages in GEMMA_CHATS:
            prompt = tmpl.render(messages=messages, add_generation_prompt=True)
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            llm.reset()
            llm.eval(ids)
            tokens, top = [], []
            for _ in range(32):
                ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
                logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
                order = np.argsort(-logits, kind="stable")[:5]
                tok = int(order[0])
                tokens.append(tok)
                top.append([[int(i), float(logits[i])] for i in order])
                if llama_cpp.llama_vocab_is_eog(vocab_ptr, tok):
                    break
                llm.eval([tok])
            text = llm.detokenize(tokens).decode("utf-8", errors="replace")
            f.write(json.dumps({"messages": messages, "prompt": prompt, "prompt_ids": ids,
                                "tokens": tokens, "text": text, "top": top}, ensure_ascii=False) + "\n")
            print(repr(text))


if __name__ == "__main__":
    main()
