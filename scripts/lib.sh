# Shared shell helpers for scripts/ and bench/ (source it).

# wait_addr FILE: waits for a "listening on http://ADDR" line in FILE and prints ADDR.
wait_addr() {
  for _ in $(seq 1 200); do
    if grep -q 'listening on http://' "$1" 2>/dev/null; then
      grep -o 'listening on http://[^ ]*' "$1" | head -1 | sed 's|listening on http://||'
      return 0
    fi
    sleep 0.05
  done
  echo "server did not start: $(cat "$1")" >&2
  exit 1
}

# wait_router ADDR: waits until the gateway at ADDR has built its task router (`/healthz` stops
# saying "router":"building": the classifier is built in the background after the gateway
# starts listening, and requests go to the LLM until then).
wait_router() {
  for _ in $(seq 1 1200); do
    if ! curl -s "http://$1/healthz" | grep -q '"router":"building"'; then
      return 0
    fi
    sleep 0.05
  done
  echo "the gateway at $1 did not build its task router in 60 s" >&2
  exit 1
}
