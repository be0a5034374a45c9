#!/bin/sh
# Routes the container's command: `web` (daphne), `celery-worker`, `celery-beat`, or any
# other command as given (`python3 manage.py migrate`). Extra arguments go to the server.
set -e

case "$1" in
  web)
    shift
    exec daphne --bind 0.0.0.0 --port "${PORT:-8000}" "$@" shop.asgi:application
    ;;
  celery-worker)
    shift
    exec python3 -m celery --app shop worker --loglevel "${CELERY_LOG_LEVEL:-info}" "$@"
    ;;
  celery-beat)
    shift
    exec python3 -m celery --app shop beat --loglevel "${CELERY_LOG_LEVEL:-info}" \
      --schedule /data/celerybeat-schedule "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
