#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer at the configured URLs, the boring way:
#   1. something already answers there -> use it;
#   2. else a Docker engine answers     -> `docker compose -f compose.yml up -d <service>`;
#   3. else Debian/Ubuntu, root or sudo -> apt-get install what is missing, start it on loopback
#      (or the programs are installed)     (no systemd needed).
# Exits 0 only when all three answer; quick (a few tens of ms) when they already do.
# See docs/operations.md.
#
# Environment:
#   SENTINEL_ADMIN_DATABASE_URL  default postgresql://postgres@127.0.0.1:5432/sentinel
#   SENTINEL_REDIS_URL           default redis://127.0.0.1:6379/0
#   SENTINEL_AMQP_URL            default amqp://guest:guest@127.0.0.1:5672/
#   SENTINEL_SERVICES_WAIT_S     how long to wait for a started service (default 60)
#   SENTINEL_PG_CLUSTER          Debian cluster name used/created by path 3 (default main)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${SENTINEL_ADMIN_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/sentinel}
REDIS_URL=${SENTINEL_REDIS_URL:-redis://127.0.0.1:6379/0}
AMQP_URL=${SENTINEL_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
WAIT_S=${SENTINEL_SERVICES_WAIT_S:-60}
PG_CLUSTER=${SENTINEL_PG_CLUSTER:-main}

SERVICES=(postgresql redis rabbitmq)
declare -A URL=([postgresql]=$PG_URL [redis]=$REDIS_URL [rabbitmq]=$AMQP_URL)
declare -A DEFAULT_PORT=([postgresql]=5432 [redis]=6379 [rabbitmq]=5672)
declare -A COMPOSE_SERVICE=([postgresql]=postgres [redis]=redis [rabbitmq]=rabbitmq)
declare -A PACKAGE=([postgresql]=postgresql [redis]=redis-server [rabbitmq]=rabbitmq-server)
declare -A BINARY=([postgresql]=pg_ctlcluster [redis]=redis-server [rabbitmq]=rabbitmq-server)
declare -A HOST PORT HOW LOG

die() { echo "services.sh: $*" >&2; exit 1; }

# --- URLs --------------------------------------------------------------------------------------

# Sets HOST[$1] and PORT[$1] from scheme://[user[:password]@]host[:port][/path][?query];
# IPv6 literals in brackets; an empty host means 127.0.0.1.
parse_url() {
  local name=$1 url=$2 rest host port=""
  rest=${url#*://}
  rest=${rest%%[/?#]*}
  rest=${rest##*@}            # the last @: a password may contain one
  if [[ $rest == \[* ]]; then  # [::1]:5432
    host=${rest%%]*}
    host=${host#[}
    rest=${rest#*]}
    [[ $rest == :* ]] && port=${rest#:}
  elif [[ $rest == *:* ]]; then
    host=${rest%%:*}
    port=${rest#*:}
  else
    host=$rest
  fi
  port=${port:-$(default_port "$name" "$url")}
  [[ $port =~ ^[0-9]+$ ]] || die "$name: cannot read a port out of $url"
  HOST[$name]=${host:-127.0.0.1}
  PORT[$name]=$port
}

default_port() {  # name url: amqps:// defaults to 5671, everything else to the service's port
  if [[ $2 == amqps://* ]]; then echo 5671; else echo "${DEFAULT_PORT[$1]}"; fi
}

is_loopback() { [[ $1 == localhost || $1 == 127.* || $1 == ::1 ]]; }

# --- probes ------------------------------------------------------------------------------------
# Each probe speaks a word of the service's protocol, so a port held by something else (another
# program, a proxy that accepts every connection) does not count as the service. Run by
# `timeout 2 bash -c PROBE _ host port`; $1 and $2 expand in that inner shell.

# PostgreSQL (when pg_isready is not installed): an SSLRequest gets one byte back, S or N
# (E from a server refusing it).
# shellcheck disable=SC2016
PROBE_POSTGRESQL='exec 3<>"/dev/tcp/$1/$2" || exit 1
printf "\x00\x00\x00\x08\x04\xd2\x16\x2f" >&3
IFS= read -r -n 1 c <&3 && [[ $c == [SNE] ]]'
# Redis: PING gets +PONG, or -NOAUTH when a password is set (-LOADING: not ready yet).
# shellcheck disable=SC2016
PROBE_REDIS='exec 3<>"/dev/tcp/$1/$2" || exit 1
printf "PING\r\n" >&3
IFS= read -r line <&3 && [[ $line == +PONG* || $line == -NOAUTH* ]]'
# AMQP 0-9-1: the protocol header gets a Connection.Start frame: type 1, channel 0, a 4-byte
# size, then class 10 method 10.
# shellcheck disable=SC2016
PROBE_RABBITMQ='exec 3<>"/dev/tcp/$1/$2" || exit 1
printf "AMQP\x00\x00\x09\x01" >&3
frame=$(head -c 11 <&3 | od -An -tu1)
[[ $(echo $frame) == "1 0 0 "*" 0 10 0 10" ]]'
# TLS ports (rediss://, amqps://): a TCP connect is all we check.
# shellcheck disable=SC2016
PROBE_TCP='exec 3<>"/dev/tcp/$1/$2"'

declare -A PROBE=([postgresql]=$PROBE_POSTGRESQL [redis]=$PROBE_REDIS [rabbitmq]=$PROBE_RABBITMQ)

answers() {  # name
  local host=${HOST[$1]} port=${PORT[$1]} probe=${PROBE[$1]}
  # pg_isready, where installed, also tells a booting or stopping server from a ready one, and
  # does a full TLS handshake where the server wants one (no "could not accept SSL" noise).
  if [[ $1 == postgresql ]] && command -v pg_isready >/dev/null 2>&1; then
    timeout 3 pg_isready -q -h "$host" -p "$port" -t 2
    return
  fi
  [[ ${URL[$1]} == rediss://* || ${URL[$1]} == amqps://* ]] && probe=$PROBE_TCP
  timeout 2 bash -c "$probe" _ "$host" "$port" 2>/dev/null
}

wait_until_answers() {  # name
  local deadline=$((SECONDS + WAIT_S))
  until answers "$1"; do
    if ((SECONDS >= deadline)); then
      local what="nothing answers"
      timeout 2 bash -c "$PROBE_TCP" _ "${HOST[$1]}" "${PORT[$1]}" 2>/dev/null &&
        what="something other than $1 answers"
      echo "$1: $what at ${URL[$1]} (${HOST[$1]}:${PORT[$1]}) after ${WAIT_S}s" \
        "${LOG[$1]:+(see ${LOG[$1]})}" >&2
      return 1
    fi
    sleep 1
  done
}

# --- privileges and packages -------------------------------------------------------------------

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "'$*' needs root or sudo"
  fi
}

can_install() {
  [[ -f /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1 &&
    { ((EUID == 0)) || command -v sudo >/dev/null 2>&1; }
}

apt_install() {  # packages...
  ((${#@})) || return 0
  echo "installing $* (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}

have_binaries() {  # names...: every program needed to start them is installed
  local name
  for name in "$@"; do command -v "${BINARY[$name]}" >/dev/null 2>&1 || return 1; done
}

docker_ok() {
  command -v docker >/dev/null 2>&1 &&
    timeout 10 docker info >/dev/null 2>&1 &&
    docker compose version >/dev/null 2>&1
}

# --- local instances (path 3) ------------------------------------------------------------------

# The cluster's "version port status" from pg_lsclusters (newest version), empty if none.
pg_cluster() {
  pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2 == c { print $1, $3, $4 }' |
    sort -V | tail -n 1
}

# A developer box: loopback TCP connections are trusted, as the password-less default URLs of
# both roles (postgres for migrations, sentinel_app for serving) expect. Edits only if the
# first loopback rule is not already `trust`. Prints "changed" when it edited the file.
pg_trust_loopback() {  # hba_file
  local first
  # shellcheck disable=SC2016 # awk fields, not shell variables
  first=$(as_root awk '$1 ~ /^host/ && $4 == "127.0.0.1/32" { print $NF; exit }' "$1")
  [[ $first == trust ]] && return 0
  as_root sed -i '1i # Added by SentinelStream ops/services.sh: trust loopback TCP (dev box).\
host    all             all             127.0.0.1/32            trust\
host    all             all             ::1/128                 trust' "$1"
  echo changed
}

start_postgresql() {
  local port=${PORT[postgresql]} version cport status conf
  command -v pg_ctlcluster >/dev/null 2>&1 || die "postgresql: pg_ctlcluster not found"
  read -r version cport status <<<"$(pg_cluster)" || true
  if [[ -z ${version:-} ]]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V |
      tail -n 1)
    [[ -n $version ]] || die "postgresql: no server version under /usr/lib/postgresql"
    as_root pg_createcluster "$version" "$PG_CLUSTER" --port "$port" >/dev/null
    cport=$port status=down
  fi
  conf=/etc/postgresql/$version/$PG_CLUSTER
  if [[ $cport != "$port" ]]; then
    [[ $status == online* ]] && die "postgresql: cluster $version/$PG_CLUSTER runs on port" \
      "$cport, not $port: point SENTINEL_ADMIN_DATABASE_URL at $cport, or set" \
      "SENTINEL_PG_CLUSTER to a new name to create a cluster on $port"
    as_root pg_conftool "$version" "$PG_CLUSTER" set port "$port"
  fi
  local hba_changed
  hba_changed=$(pg_trust_loopback "$conf/pg_hba.conf")
  LOG[postgresql]=/var/log/postgresql/postgresql-$version-$PG_CLUSTER.log
  if [[ $status == online* ]]; then  # up on the port but refusing: reload the new rules
    [[ -n $hba_changed ]] &&
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" reload
  else
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start ||
      die "postgresql: pg_ctlcluster $version $PG_CLUSTER start failed (see ${LOG[postgresql]})"
  fi
  HOW[postgresql]="started cluster $version/$PG_CLUSTER"
}

bind_address() {  # host -> the loopback address to listen on
  if [[ $1 == ::1 ]]; then echo ::1; elif [[ $1 == 127.* ]]; then echo "$1"; else echo 127.0.0.1; fi
}

start_redis() {
  local port=${PORT[redis]}
  LOG[redis]=/tmp/sentinel-redis-$port.log
  # daemonize forks before binding: a bind failure shows in the log, found by the wait.
  redis-server --daemonize yes --bind "$(bind_address "${HOST[redis]}")" --port "$port" \
    --save "" --appendonly no --dir /tmp --logfile "${LOG[redis]}" \
    --pidfile "/tmp/sentinel-redis-$port.pid" >/dev/null
  HOW[redis]="started local redis-server"
}

start_rabbitmq() {
  local port=${PORT[rabbitmq]} ip node conf settings
  ip=$(bind_address "${HOST[rabbitmq]}")
  # Loopback only: the AMQP listener, epmd and Erlang distribution (port = AMQP port + 20000).
  settings=(RABBITMQ_NODE_IP_ADDRESS="$ip" RABBITMQ_NODE_PORT="$port"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
  if [[ $port == 5672 ]]; then
    # The machine's own node and configuration. Its default name, rabbit@<hostname>, cannot
    # boot when the hostname does not resolve: then it is rabbit@localhost.
    node=${RABBITMQ_NODENAME:-}
    if [[ -z $node ]] && ! getent hosts "${HOSTNAME%%.*}" >/dev/null 2>&1; then
      node=rabbit@localhost
    fi
  else
    # A second node beside the machine's own: its own name, and its own configuration file so
    # that listeners set in /etc/rabbitmq/rabbitmq.conf do not apply to it.
    node=sentinel-$port@localhost
    conf=/tmp/sentinel-rabbitmq-$port.conf
    printf 'listeners.tcp.1 = %s:%s\n' "$ip" "$port" >"$conf"
    chmod 644 "$conf"
    settings+=(RABBITMQ_CONFIG_FILE="$conf")
  fi
  [[ -n $node ]] && settings+=(RABBITMQ_NODENAME="$node")
  LOG[rabbitmq]=/var/log/rabbitmq/${node:-rabbit@${HOSTNAME%%.*}}.log
  # The rabbitmq-server wrapper runs the node as the rabbitmq user (root or that user only);
  # `env` carries the settings through sudo.
  as_root env "${settings[@]}" rabbitmq-server -detached >/dev/null 2>&1 ||
    die "rabbitmq: rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
  HOW[rabbitmq]="started local rabbitmq-server${node:+ ($node)}"
}

# --- main --------------------------------------------------------------------------------------

missing=()
for name in "${SERVICES[@]}"; do
  parse_url "$name" "${URL[$name]}"
  if answers "$name"; then
    echo "$name: using ${HOST[$name]}:${PORT[$name]}"
  else
    missing+=("$name")
  fi
done
((${#missing[@]})) || exit 0

for name in "${missing[@]}"; do
  is_loopback "${HOST[$name]}" ||
    die "$name: nothing answers at ${URL[$name]}, and ${HOST[$name]} is not this machine:" \
      "start it there, or point the URL at a local one"
done

if docker_ok; then
  # compose.yml publishes on 127.0.0.1 at these ports (defaults: the standard ones).
  export SENTINEL_POSTGRES_PORT=${PORT[postgresql]} SENTINEL_REDIS_PORT=${PORT[redis]} \
    SENTINEL_AMQP_PORT=${PORT[rabbitmq]}
  services=()
  for name in "${missing[@]}"; do services+=("${COMPOSE_SERVICE[$name]}"); done
  docker compose -f compose.yml up -d "${services[@]}" ||
    die "docker compose up -d ${services[*]} failed"
  for name in "${missing[@]}"; do
    HOW[$name]="started compose service ${COMPOSE_SERVICE[$name]}"
    LOG[$name]="docker compose logs ${COMPOSE_SERVICE[$name]}"
  done
elif can_install || have_binaries "${missing[@]}"; then
  packages=()
  for name in "${missing[@]}"; do
    command -v "${BINARY[$name]}" >/dev/null 2>&1 || packages+=("${PACKAGE[$name]}")
  done
  apt_install "${packages[@]}"
  for name in "${missing[@]}"; do
    # The package's install script may have started it; PostgreSQL still needs its loopback
    # rules checked, so start_postgresql handles a running cluster too.
    if [[ $name != postgresql ]] && answers "$name"; then
      HOW[$name]="installed ${PACKAGE[$name]}, started by the package,"
    else
      case $name in
        postgresql) start_postgresql ;;
        redis) start_redis ;;
        rabbitmq) start_rabbitmq ;;
        *) die "unknown service $name" ;;
      esac
    fi
  done
else
  die "nothing answers for ${missing[*]}, no Docker engine answers, and this is not a" \
    "Debian/Ubuntu machine where I can install them (root or sudo): start them yourself" \
    "(docs/operations.md)"
fi

failed=0
for name in "${missing[@]}"; do
  if wait_until_answers "$name"; then
    echo "$name: ${HOW[$name]} on ${HOST[$name]}:${PORT[$name]}"
  else
    failed=1
  fi
done
exit "$failed"
