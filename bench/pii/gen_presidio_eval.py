#!/usr/bin/env python3
"""An independent corpus from presidio-evaluator's generator (written by Microsoft's Presidio team):
its 209 sentence templates filled by its Faker providers and its FakeNameGenerator person records
(names from many countries), converted to the bench's span format.

Run with bench/pii/.venv (presidio-evaluator==0.3.2). Labels are the generator's own, mapped to
downshift's types: PERSON, EMAIL_ADDRESS->EMAIL, PHONE_NUMBER->PHONE, CREDIT_CARD, IBAN_CODE->IBAN,
US_SSN->SSN, IP_ADDRESS, STREET_ADDRESS; a template's {{date_of_birth}} is labelled DATE_OF_BIRTH.
Adjacent address parts (building number, street, secondary address, city, state, zip, country)
are merged into one STREET_ADDRESS span. A street name without any number ("the corner of Elm
St.") and the generator's types downshift has no counterpart for but that are arguably personal
(DATE_TIME, US_DRIVER_LICENSE, GPE, ZIP_CODE alone) go to "ignore": predictions overlapping them
are neither true nor false positives. ORGANIZATION, TITLE, NRP, AGE, DOMAIN_NAME spans are not
PII here: a prediction on them is a false positive.

Split: templates by position (even -> dev, odd -> report), different seeds.
Usage: .venv/bin/python gen_presidio_eval.py --split dev|report [--n N] --out PATH
"""
import argparse
import contextlib
import io
import json
import logging
import random
import warnings

MAP = {"PERSON": "PERSON", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
       "US_SSN": "SSN", "IP_ADDRESS": "IP_ADDRESS", "STREET_ADDRESS": "STREET_ADDRESS", "DATE_OF_BIRTH": "DATE_OF_BIRTH"}
ADDRESS_GLUE = {"GPE", "ZIP_CODE", "STREET_ADDRESS"}
IGNORE = {"DATE_TIME", "US_DRIVER_LICENSE", "GPE", "ZIP_CODE"}


def byte_off(text, i):
    return len(text[:i].encode("utf-8"))


def convert(sample):
    text = sample.full_text
    spans = sorted(((s.entity_type, s.start_position, s.end_position) for s in sample.spans), key=lambda x: x[1])
    # Merge runs of address parts separated only by spaces, commas, newlines (also the templates'
    # literal "\\n"), '?' or '>' quoting.
    merged = []
    for typ, s, e in spans:
        if merged and typ in ADDRESS_GLUE and merged[-1][0] in ADDRESS_GLUE and (typ == "STREET_ADDRESS" or merged[-1][0] == "STREET_ADDRESS") \
                and text[merged[-1][2]:s].replace("\\n", " ").replace("?", " ").strip(" ,\n>\t") == "":
            merged[-1] = ("STREET_ADDRESS", merged[-1][1], e)
        else:
            merged.append((typ, s, e))
    gold, ignore = [], []
    for typ, s, e in merged:
        if typ == "STREET_ADDRESS" and not any(c.isdigit() for c in text[s:e]):
            ignore.append({"type": typ, "start": byte_off(text, s), "end": byte_off(text, e)})
        elif typ in MAP:
            gold.append({"type": MAP[typ], "start": byte_off(text, s), "end": byte_off(text, e)})
        elif typ in IGNORE:
            ignore.append({"type": typ, "start": byte_off(text, s), "end": byte_off(text, e)})
    return {"text": text, "lang": "en", "kind": f"template_{sample.template_id}", "spans": gold, "ignore": ignore}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["dev", "report"], required=True)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    from presidio_evaluator.data_generator import PresidioSentenceFaker
    from presidio_evaluator.data_generator.presidio_sentence_faker import presidio_templates_file_path

    part = 0 if args.split == "dev" else 1
    seed = 5501 if part == 0 else 6607
    lines = [line.strip() for line in presidio_templates_file_path.read_text().splitlines() if line.strip()]
    templates = [t for i, t in enumerate(lines) if i % 2 == part]
    mapping = dict(PresidioSentenceFaker.ENTITY_TYPE_MAPPING)
    mapping["date_of_birth"] = "DATE_OF_BIRTH"
    mapping["birthday"] = "DATE_OF_BIRTH"
    random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, sentence_templates=templates,
                                      entity_type_mapping=mapping, random_seed=seed)
        samples = faker.generate_new_fake_sentences(args.n)
    rows = [convert(s) for s in samples]
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(rows)} texts, {sum(len(r['spans']) for r in rows)} spans, {len(templates)} templates")


if __name__ == "__main__":
    main()
