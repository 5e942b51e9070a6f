#!/usr/bin/env bash
# The preflight service: stops `docker compose up` while a secret still holds the change-me placeholder
# of .env.example. PostgreSQL and MinIO wait for it, because they write the secrets they are given into
# their volumes on the first start and keep them after .env is fixed. docker-compose.yml passes it every
# secret, under its .env name.
set -euo pipefail

placeholders=()
for name in $(compgen -e); do
    if [[ "${!name}" == *change-me* ]]; then
        placeholders+=("$name")
    fi
done
if (( ${#placeholders[@]} )); then
    echo "Refusing to start: these settings still hold a placeholder from .env.example: ${placeholders[*]}" >&2
    echo "Replace every change-me value in .env (docs/deploy.md says how to generate them)." >&2
    exit 1
fi
echo "preflight: no placeholder secrets"
