#!/usr/bin/env bash
# Installs (Debian packages) and starts PostgreSQL on loopback for the store tests, creates the
# test role, and writes NEXUS_TEST_POSTGRES_URL to $NEXUS_TEST_ENV. Idempotent: quick when the
# server already runs. Run as root (scripts/test.sh does). No systemd: pg_ctlcluster directly.
set -euo pipefail

USER_NAME="${NEXUS_PG_USER:-nexus}"
PASSWORD="${NEXUS_PG_PASSWORD:-nexus}"
PORT="${NEXUS_PG_PORT:-5432}"
URL="postgres://${USER_NAME}:${PASSWORD}@127.0.0.1:${PORT}/postgres"

# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

# The server, and libpq's headers for diesel's `postgres` feature (pq-sys).
need postgresql libpq-dev

# Debian's package creates one cluster; pick it (or make one if a previous run removed it).
cluster="$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')"
if [ -z "$cluster" ]; then
  version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  pg_createcluster "$version" main -p "$PORT" >/dev/null
  cluster="$version main"
fi
read -r version name <<<"$cluster"
cluster_port="$(pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $3}')"
if [ "$cluster_port" != "$PORT" ]; then
  echo "error: PostgreSQL cluster $version/$name listens on $cluster_port, expected $PORT" >&2
  exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
  # Loopback only; enough connections for parallel test cases each with a small pool.
  pg_ctlcluster "$version" "$name" start -- -o "-c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off" \
    || pg_ctlcluster "$version" "$name" start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$PORT" && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { echo "error: PostgreSQL did not come up on 127.0.0.1:$PORT" >&2; exit 1; }

# The test role: password login, may create the throwaway databases each test case uses.
su postgres -c "psql -q -v ON_ERROR_STOP=1 -p $PORT" <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${USER_NAME}') THEN
    CREATE ROLE ${USER_NAME} LOGIN CREATEDB PASSWORD '${PASSWORD}';
  ELSE
    ALTER ROLE ${USER_NAME} LOGIN CREATEDB PASSWORD '${PASSWORD}';
  END IF;
END
\$\$;
SQL

if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_TEST_POSTGRES_URL='${URL}'" >>"$NEXUS_TEST_ENV"
fi
echo "PostgreSQL ready: ${URL}"
