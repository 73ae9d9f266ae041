#!/usr/bin/env bash
# `make demo`: the whole stack on one machine, after `make install`.
#   .env with a generated secret key -> migrate (SQLite) -> demo project and users with generated
#   passwords -> Redis up -> Celery worker (+ beat) in the background -> web server in the
#   foreground. Ctrl+C stops the server and the worker (and Redis, if this script started it).
#
# Settings (environment):
#   TALLY_DEMO_HOST / TALLY_DEMO_PORT   where the web server listens (127.0.0.1:8000)
#   TALLY_DEMO_DATABASE_URL             default sqlite:///<repo>/tally.sqlite3
#   TALLY_DEMO_REDIS_URL                default redis://127.0.0.1:6379/0
#   TALLY_DEMO_SERVER=gunicorn          serve with gunicorn (after collectstatic) instead of runserver
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
HOST=${TALLY_DEMO_HOST:-127.0.0.1}
PORT=${TALLY_DEMO_PORT:-8000}
SERVER=${TALLY_DEMO_SERVER:-runserver}

if [ ! -x "$PY" ]; then
  echo "No virtualenv at .venv: run 'make install' (or 'make demo', which does it) first." >&2
  exit 1
fi

export DJANGO_SETTINGS_MODULE=config.settings.local
export DATABASE_URL=${TALLY_DEMO_DATABASE_URL:-sqlite:///$ROOT/tally.sqlite3}
export REDIS_URL=${TALLY_DEMO_REDIS_URL:-redis://127.0.0.1:6379/0}
export CELERY_BROKER_URL=$REDIS_URL
export PYTHONUNBUFFERED=1
mkdir -p var/log var/redis

step() { printf '\n==> %s\n' "$*"; }

step "Secrets (.env)"
"$PY" scripts/write_env.py

step "Database ($DATABASE_URL)"
"$PY" manage.py migrate --noinput

step "Demo project and users"
# --reset-passwords: every start prints logins that work, and none is ever fixed in code.
logins=$("$PY" manage.py seed_demo --reset-passwords)
echo "$logins"

if [ "$SERVER" = "gunicorn" ]; then
  step "Static files"
  "$PY" manage.py collectstatic --noinput -v 0
fi

step "Redis ($REDIS_URL)"
redis_ping() { "$PY" -c 'import os, redis; redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=2).ping()' 2>/dev/null; }
STARTED_REDIS=""
if redis_ping; then
  echo "Redis answers."
elif command -v redis-server >/dev/null; then
  port=$("$PY" -c 'import os, urllib.parse as u; print(u.urlparse(os.environ["REDIS_URL"]).port or 6379)')
  echo "Redis is not running; starting redis-server on 127.0.0.1:$port (data in var/redis)."
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$ROOT/var/redis" \
    --appendonly yes --logfile "$ROOT/var/log/redis.log" --pidfile "$ROOT/var/redis/redis.pid"
  for _ in $(seq 50); do redis_ping && break; sleep 0.2; done
  redis_ping || { echo "redis-server did not come up; see var/log/redis.log" >&2; exit 1; }
  STARTED_REDIS=$ROOT/var/redis/redis.pid
else
  cat >&2 <<'EOF'
Redis is not running and redis-server is not installed. Install it, then run `make demo` again:
  Debian/Ubuntu:  sudo apt-get install redis-server
  macOS:          brew install redis && brew services start redis
  or point TALLY_DEMO_REDIS_URL at a Redis you have.
EOF
  exit 1
fi

WORKER_PID=""
cleanup() {
  trap - EXIT INT TERM
  echo
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    echo "Stopping the Celery worker (pid $WORKER_PID)…"
    kill -TERM "$WORKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$WORKER_PID" 2>/dev/null || true
  fi
  if [ -n "$STARTED_REDIS" ] && [ -f "$STARTED_REDIS" ]; then
    echo "Stopping the Redis this demo started…"
    kill -TERM "$(cat "$STARTED_REDIS")" 2>/dev/null || true
  fi
  echo "Demo stopped."
}
trap cleanup EXIT INT TERM

# One worker serves every queue, runs first: with the broker's "priority" queue order
# (config/settings/base.py) it takes a waiting run before the pool's next embedding chunk.
step "Celery worker (queues training,default,embedding, with beat) -> var/log/worker.log"
"$PY" -m celery -A config worker -Q training,default,embedding -B -c 1 -l INFO \
  -s "$ROOT/var/celerybeat-schedule" -n "demo@%h" >var/log/worker.log 2>&1 &
WORKER_PID=$!
sleep 1
if ! kill -0 "$WORKER_PID" 2>/dev/null; then
  echo "The Celery worker exited at once; its log:" >&2
  tail -n 30 var/log/worker.log >&2
  exit 1
fi

URL="http://$HOST:$PORT/"
cat <<EOF

============================================================
 Tally demo: open $URL
 Log in as an annotator and press number keys + Enter to label:
   ${URL}projects/ag-news-topics/label/
 Watch the model learn (as demo-admin or auditor): the first version
 appears a few labels in, with its figures, runs and progress, at
   ${URL}projects/ag-news-topics/models/
$(echo "$logins" | sed -n '/^Demo logins/,$p')
 Project console (admins): ${URL}projects/ag-news-topics/   API docs: ${URL}api/docs/
 Worker log: var/log/worker.log.  Ctrl+C stops everything.
============================================================

EOF

step "Web server ($SERVER) on $URL"
if [ "$SERVER" = "gunicorn" ]; then
  "$ROOT/.venv/bin/gunicorn" config.wsgi --bind "$HOST:$PORT" --workers 2 --access-logfile - \
    --env DJANGO_SETTINGS_MODULE=config.settings.local
else
  "$PY" manage.py runserver --noreload "$HOST:$PORT"
fi
