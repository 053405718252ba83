#!/usr/bin/env bash
# One command from a fresh clone: set up .venv, generate a demo event log, run the nightly
# pipeline in local-mode Spark and print where the recommendations went.
# Environment: DEMO_EVENTS (default 500000), DEMO_DIR (default .demo), RUN_DATE (default 2026-11-01).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

demo_dir="${DEMO_DIR:-.demo}"
events="${DEMO_EVENTS:-500000}"
run_date="${RUN_DATE:-2026-11-01}"

if [ ! -d "$demo_dir/events" ] || [ "$(cat "$demo_dir/events.size" 2>/dev/null)" != "$events" ]; then
  echo "generating a demo event log of $events events in $demo_dir/events" >&2
  sparkals generate --config conf/local.toml --users 20000 --items 3000 --events "$events" \
    --start 2026-07-01 --days 120 --out "$demo_dir/events" >/dev/null
  echo "$events" > "$demo_dir/events.size"
fi

sparkals nightly --config conf/local.toml \
  --set "input.path=$demo_dir/events" --set "output.root=$demo_dir/output" \
  --run-date "$run_date" "$@"
