#!/bin/sh
# The redis service's entrypoint: writes Redis's password into a configuration file that only the
# redis user reads, then starts Redis through the image's own entrypoint (which drops to that user).
# On a command line the password would show in `ps` and `docker inspect`. REDISCLI_AUTH holds it, as
# redis-cli reads it for the health check.
set -eu

conf="${REDIS_CONF:-/tmp/redis.conf}"
umask 077
printf 'requirepass "%s"\n' "${REDISCLI_AUTH:?}" > "$conf"
chown redis "$conf"
exec docker-entrypoint.sh redis-server "$conf"
