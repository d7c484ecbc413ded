#!/usr/bin/env python3
"""Write crates/discover/tests/fixtures/minilm_reference.json: reference token ids and
sentence-transformers embeddings of all-MiniLM-L6-v2 for a fixed sentence set.

Usage (from anywhere):  python3 bench/discover/make_embedding_fixture.py

Creates a virtual environment under bench/discover/.venv (git-ignored) on first run, installs
sentence-transformers (CPU torch from PyPI) into it and re-runs itself there. The model is loaded
from the packaged folder models/all-minilm-l6-v2 (fetched by `scripts/fetch.sh minilm`), offline.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
MODEL = ROOT / "models" / "all-minilm-l6-v2"
OUT = ROOT / "crates" / "discover" / "tests" / "fixtures" / "minilm_reference.json"

LONG = " ".join(
    f"Sentence number {i} of a long document talks about shipping orders, invoices and refunds."
    for i in range(40)
)

SENTENCES = [
    "Hello world",
    "What's the weather like in Berlin tomorrow?",
    "Extract the order as JSON.",
    "Classify the intent of this message: I want to cancel my subscription.",
    "The quick brown fox jumps over the lazy dog.",
    "A",
    "   ",
    "?!",
    "",
    LONG,
    "word " * 300,
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY name;",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '[{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, null, true, 3.14e-10]',
    "Café crème brûlée à la française, naïve façade, Ångström, Øresund, São Paulo",
    "Müller's Straße in Zürich: ÄÖÜ äöü ß",
    "ÉCOLE NORMALE SUPÉRIEURE",
    "東京は日本の首都です。",
    "我爱自然语言处理和机器学习",
    "한국어 문장도 시험해 봅니다",
    "日本語とEnglishが混ざった文 mixed text",
    "I love pizza 🍕🍕 and emoji 😀👍🏽 so much!",
    "🔥🔥🔥",
    "Ünïcödé ḿäḋńëṡṡ with combining: e\u0301 a\u0300 n\u0303",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp and zero\u200bwidth",
    "control\u0000chars\u0007here\u001b[0m",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 150,
    "You are a helpful assistant. Call the tool `search_flights` with origin=SFO, destination=JFK, date=2025-03-14.",
    "<tool_call>{\"name\": \"send_email\", \"arguments\": {\"to\": \"bob@example.com\", \"subject\": \"Hi\"}}</tool_call>",
    "Tool result: {\"temperature\": 21.5, \"condition\": \"sunny\", \"humidity\": 0.43}",
    "user: book a table for 4 at 7pm\nassistant: calling reserve_table(party_size=4, time='19:00')",
    "https://example.com/path?query=1&other=two#fragment",
    "Email me at john.doe+test@example.org or call +1 (555) 123-4567.",
    "Price: $1,234.56 — discount 15% (valid until 31/12/2025)",
    "[CLS] [SEP] [MASK] [PAD] [UNK] special tokens as text",
    "don't can't won't it's I'm you're",
    "The mitochondria is the powerhouse of the cell.",
    "Résumé of a naïve coöperative über-project",
    "Ελληνικά κείμενα και Русский текст",
]


def ensure_venv() -> None:
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             "--index-url", os.environ.get("TORCH_INDEX_URL", "https://pypi.org/simple"),
             "torch"])
        subprocess.check_call(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             "sentence-transformers"])
    os.execv(str(py), [str(py), str(Path(__file__).resolve())] + sys.argv[1:])


def main() -> None:
    ensure_venv()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if not (MODEL / "model.safetensors").exists():
        sys.exit(f"{MODEL} is missing; run scripts/fetch.sh minilm")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(MODEL), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    features = model.tokenize(SENTENCES)
    vectors = model.encode(SENTENCES, batch_size=8, normalize_embeddings=True,
                           convert_to_numpy=True)
    items = []
    for i, text in enumerate(SENTENCES):
        mask = features["attention_mask"][i]
        ids = features["input_ids"][i][mask.bool()].tolist()
        items.append({
            "text": text,
            "ids": ids,
            "embedding": [round(float(x), 6) for x in vectors[i]],
        })
    import sentence_transformers
    import transformers
    doc = {
        "model": "all-MiniLM-L6-v2 (models/all-minilm-l6-v2)",
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "dim": int(vectors.shape[1]),
        "sentences": items,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({len(items)} sentences, dim {vectors.shape[1]})")


if __name__ == "__main__":
    main()
