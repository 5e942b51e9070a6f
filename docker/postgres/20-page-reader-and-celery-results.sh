#!/usr/bin/env bash
# Creates, beside the roles of 10-roles-and-databases.sh:
#   - the verdicts page's role (PAGE_DB_USER): it may only read the verdict database's tables and
#     views (SELECT, now and after later migrations; sessions read-only), so the api-server, which
#     serves the page, never holds a credential that writes verdicts or changes the schema;
#   - Celery's result backend: a database (CELERY_DB_NAME) owned by a role of its own
#     (CELERY_DB_USER), so workers, which need only that, never hold the metadata database's owner.
# Neither role is a superuser or may create roles or databases.
#
# PostgreSQL's image runs it once, when its data volume is first initialised. It converges, so a
# deployment whose volume predates it runs it once by hand (docs/deploy.md):
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/20-page-reader-and-celery-results.sh
set -eo pipefail  # no -u: the PostgreSQL entrypoint sources scripts that are not executable

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v verdict_db="$VERDICT_DB_NAME" -v verdict_user="$VERDICT_DB_USER" \
    -v page_user="$PAGE_DB_USER" -v page_password="$PAGE_DB_PASSWORD" \
    -v celery_db="$CELERY_DB_NAME" \
    -v celery_user="$CELERY_DB_USER" -v celery_password="$CELERY_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'page_user')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'page_user') \gexec
ALTER ROLE :"page_user" PASSWORD :'page_password';
ALTER ROLE :"page_user" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"verdict_db" TO :"page_user";

SELECT format('CREATE ROLE %I LOGIN', :'celery_user')
    WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'celery_user') \gexec
ALTER ROLE :"celery_user" PASSWORD :'celery_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'celery_db', :'celery_user')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'celery_db') \gexec
REVOKE ALL ON DATABASE :"celery_db" FROM PUBLIC;

\connect :"verdict_db"
GRANT USAGE ON SCHEMA public TO :"page_user";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"page_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"verdict_user" IN SCHEMA public GRANT SELECT ON TABLES TO :"page_user";
SQL
