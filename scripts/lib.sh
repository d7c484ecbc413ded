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
