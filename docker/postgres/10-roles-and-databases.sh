#!/usr/bin/env bash
# Creates, beside the cluster superuser (which only administrators use), a role and a database
# for each user of this PostgreSQL server:
#   - Airflow's metadata database, owned by the role every Airflow component connects with;
#   - the verdict database, owned by the role the DAGs write with (it also applies sql/migrations,
#     from airflow-init and from every task that opens the database);
#   - a read-only role for analysts (SELECT on every table and view the verdict owner creates, now
#     or by later migrations).
# None of these roles is a superuser or may create roles or databases.
#
# PostgreSQL's image runs this once, when its data volume is first initialised; changing the
# passwords afterwards takes ALTER ROLE (see docs/deploy.md).
set -eo pipefail  # no -u: the PostgreSQL entrypoint sources scripts that are not executable

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v airflow_db="$AIRFLOW_DB_NAME" \
    -v airflow_user="$AIRFLOW_DB_USER" -v airflow_password="$AIRFLOW_DB_PASSWORD" \
    -v verdict_db="$VERDICT_DB_NAME" \
    -v verdict_user="$VERDICT_DB_USER" -v verdict_password="$VERDICT_DB_PASSWORD" \
    -v analyst_user="$ANALYST_DB_USER" -v analyst_password="$ANALYST_DB_PASSWORD" <<'SQL'
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;

CREATE ROLE :"verdict_user" LOGIN PASSWORD :'verdict_password';
CREATE ROLE :"analyst_user" LOGIN PASSWORD :'analyst_password';
ALTER ROLE :"analyst_user" SET default_transaction_read_only = on;
CREATE DATABASE :"verdict_db" OWNER :"verdict_user";
REVOKE ALL ON DATABASE :"verdict_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"verdict_db" TO :"analyst_user";
\connect :"verdict_db"
GRANT USAGE ON SCHEMA public TO :"analyst_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"verdict_user" IN SCHEMA public GRANT SELECT ON TABLES TO :"analyst_user";
SQL
