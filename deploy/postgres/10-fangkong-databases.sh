#!/bin/sh
# One database and one login role per service: no service can read another
# service's tables (DESIGN.md: "No service reads another service's database").
# The official postgres image runs this once, on the first start with an empty
# data volume (/docker-entrypoint-initdb.d); later starts skip it.
set -eu

for service in registry quarantine testing dashboard; do
  var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="$(printenv "$var" || true)"
  if [ -z "$password" ]; then
    echo "fangkong-init: $var is not set; refusing to create role $service without a password" >&2
    exit 1
  fi
  # psql variables (:'name') quote the values, so a password cannot break the SQL.
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v service="$service" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'service', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'service') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'service', :'service')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'service') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'service') \gexec
SQL
  echo "fangkong-init: database $service owned by role $service"
done
