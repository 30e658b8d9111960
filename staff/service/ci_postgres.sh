#!/usr/bin/env bash
# Starts Debian's PostgreSQL (apt-get install postgresql) for the checking service's
# tests, makes a fresh database (name: $1, default nn_service_test) and prints its
# DATABASE_URL on the last line. Exit status 3: PostgreSQL is not installed here.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    echo "PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 3
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$version *main " || pg_createcluster "$version" main >/dev/null
pg_ctlcluster "$version" main start 2>/dev/null || true  # already running
for _ in $(seq 30); do pg_isready -q -h localhost && break; sleep 1; done
name=${1:-nn_service_test}
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE ROLE nn_service LOGIN CREATEDB PASSWORD ''nn_service'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nn_service') \gexec
DROP DATABASE IF EXISTS $name WITH (FORCE);
CREATE DATABASE $name OWNER nn_service;
SQL
echo "postgresql://nn_service:nn_service@localhost/$name"
