#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer at the configured URLs, the boring way:
#   1. something already answers there  -> use it;
#   2. a Docker engine answers          -> `docker compose up -d <service>`;
#   3. Debian/Ubuntu as root            -> apt-get install the package, start it on loopback.
# Exits 0 only when all three answer. Quick (well under a second) when they already do.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${SENTINEL_ADMIN_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/sentinel}
REDIS_URL=${SENTINEL_REDIS_URL:-redis://127.0.0.1:6379/0}
AMQP_URL=${SENTINEL_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
WAIT_S=${SENTINEL_SERVICES_WAIT_S:-90}

# host and port of a URL like scheme://user:pass@host:port/path
url_host() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}; echo "${rest%%:*}"; }
url_port() {
  local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}
  if [[ $rest == *:* ]]; then echo "${rest##*:}"; else echo "$2"; fi
}

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

pg_answers() {
  answers "$1" "$2" || return 1
  if command -v pg_isready >/dev/null 2>&1; then pg_isready -q -h "$1" -p "$2" -t 2; fi
}

wait_for() {  # name host port checker
  local deadline=$((SECONDS + WAIT_S))
  until "$4" "$2" "$3"; do
    if ((SECONDS >= deadline)); then
      echo "$1: nothing answers on $2:$3 after ${WAIT_S}s" >&2
      return 1
    fi
    sleep 1
  done
}

docker_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

apt_updated=""
apt_install() {
  if [[ ! -f /etc/debian_version ]]; then
    echo "cannot install $*: not Debian/Ubuntu and no Docker engine; start it yourself" >&2
    return 1
  fi
  local sudo=""
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || { echo "installing $* needs root or sudo" >&2; return 1; }
    sudo="sudo"
  fi
  if [[ -z $apt_updated ]]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

start_postgres() {  # port
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
  local conf=/etc/postgresql/$version/main
  as_root sed -i "s/^#\?port = .*/port = $1/" "$conf/postgresql.conf"
  # A developer box: trust loopback connections, as the default URLs expect.
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || \
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
}

start_redis() {  # port
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port "$1" --save "" --appendonly no \
    --logfile "/tmp/sentinel-redis-$1.log" >/dev/null
}

start_rabbitmq() {
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
}

ensure() {  # name url default_port checker compose_service starter
  local name=$1 host port
  host=$(url_host "$2")
  port=$(url_port "$2" "$3")
  if "$4" "$host" "$port"; then
    echo "$name: using $host:$port"
    return 0
  fi
  if docker_ok; then
    echo "$name: starting with docker compose ($5)"
    docker compose -f compose.yml up -d "$5" >/dev/null
  elif [[ $host == 127.0.0.1 || $host == localhost || $host == ::1 ]]; then
    echo "$name: starting a local instance on $host:$port"
    "$6" "$port"
  else
    echo "$name: nothing answers on $host:$port and it is not local; start it yourself" >&2
    return 1
  fi
  wait_for "$name" "$host" "$port" "$4"
  echo "$name: ready on $host:$port"
}

ensure postgresql "$PG_URL" 5432 pg_answers postgres start_postgres
ensure redis "$REDIS_URL" 6379 answers redis start_redis
ensure rabbitmq "$AMQP_URL" 5672 answers rabbitmq start_rabbitmq
