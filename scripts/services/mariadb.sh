#!/usr/bin/env bash
# Installs (Debian packages) and starts MariaDB on loopback for the store tests, creates the
# test user, and writes NEXUS_TEST_MYSQL_URL to $NEXUS_TEST_ENV. Idempotent: quick when the
# server already runs. Run as root (scripts/test.sh does). No systemd: mysqld_safe directly.
set -euo pipefail

USER_NAME="${NEXUS_MYSQL_USER:-nexus}"
PASSWORD="${NEXUS_MYSQL_PASSWORD:-nexus}"
PORT="${NEXUS_MYSQL_PORT:-3306}"
URL="mysql://${USER_NAME}:${PASSWORD}@127.0.0.1:${PORT}/mysql"

# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

# The server, and the client library diesel's `mysql` feature links (mysqlclient-sys finds
# MariaDB's libmariadb through the `mysqlclient` pkg-config name of the -compat package).
need mariadb-server mariadb-client libmariadb-dev libmariadb-dev-compat pkg-config

alive() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$PORT" -u "$USER_NAME" -p"$PASSWORD" ping >/dev/null 2>&1 \
  || mariadb-admin -u root ping >/dev/null 2>&1; }

if ! alive; then
  install -d -o mysql -g mysql /run/mysqld
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  # Loopback only; many connections for parallel test cases; durability is not needed here.
  nohup mysqld_safe --user=mysql --bind-address=127.0.0.1 --port="$PORT" --max-connections=500 \
    --innodb-flush-log-at-trx-commit=0 --skip-log-bin >/var/log/nexus-mariadb.log 2>&1 &
  for _ in $(seq 1 60); do
    mariadb-admin -u root ping >/dev/null 2>&1 && break
    sleep 1
  done
fi
mariadb-admin -u root ping >/dev/null 2>&1 || { echo "error: MariaDB did not come up (see /var/log/nexus-mariadb.log)" >&2; exit 1; }

# The test user: password login over TCP, may create and drop the throwaway databases.
mariadb -u root <<SQL
CREATE USER IF NOT EXISTS '${USER_NAME}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}';
CREATE USER IF NOT EXISTS '${USER_NAME}'@'localhost' IDENTIFIED BY '${PASSWORD}';
ALTER USER '${USER_NAME}'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}';
ALTER USER '${USER_NAME}'@'localhost' IDENTIFIED BY '${PASSWORD}';
GRANT ALL PRIVILEGES ON *.* TO '${USER_NAME}'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '${USER_NAME}'@'localhost';
FLUSH PRIVILEGES;
SQL

if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_TEST_MYSQL_URL='${URL}'" >>"$NEXUS_TEST_ENV"
fi
echo "MariaDB ready: ${URL}"
