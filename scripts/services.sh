#!/usr/bin/env bash
# Makes the services the hub needs available: RabbitMQ on 127.0.0.1:5672 and PostgreSQL on
# 127.0.0.1:5432 (or the host and port of RACCORDO__AMQP__URL / RACCORDO__DATABASE__URL), and
# the project's own Dovecot (IMAP) on 127.0.0.1:10143 (RACCORDO_DOVECOT_PORT) for the PEC
# receipts and bounces of the tests and the demo.
#
# For each one: if its port answers, nothing to do. Otherwise start the locally installed
# server; otherwise install it with apt-get (as root or with sudo) and start it; otherwise run
# it with `docker compose -f docker/compose.yml`. If none of these is possible, say what is
# missing and exit 1. Silent when everything is already up; safe to run any number of times.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

COMPOSE_FILE=docker/compose.yml
WAIT_SECONDS=60
APT_UPDATED=0

log() { printf '[services] %s\n' "$*" >&2; }

# host and port of a URL like scheme://[user[:password]@]host[:port][/...]
url_authority() { local rest=${1#*://}; rest=${rest%%[/?]*}; echo "${rest##*@}"; }
url_host() {
  local authority
  authority=$(url_authority "$1")
  if [[ $authority =~ ^\[([^]]*)\] ]]; then echo "${BASH_REMATCH[1]}"; else echo "${authority%:*}"; fi
}
url_port() { # url default-port
  if [[ $(url_authority "$1") =~ :([0-9]+)$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$2"; fi
}
is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_port() { # name host port
  local i
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    port_open "$2" "$3" && return 0
    sleep 1
  done
  log "$1 is still not answering on $2:$3 after ${WAIT_SECONDS} s."
  return 1
}

can_root() { ((EUID == 0)) || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }
as_root() { if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi; }

apt_install() { # package
  command -v apt-get >/dev/null && can_root || return 1
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "Installing $1 (apt-get)."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

compose_works() { command -v docker >/dev/null && docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

compose_up() { # service
  log "Starting $1 with docker compose ($COMPOSE_FILE)."
  docker compose -f "$COMPOSE_FILE" up -d "$1"
}

# ---------------------------------------------------------------------------- RabbitMQ

rabbitmq_installed() { command -v rabbitmq-server >/dev/null; }

rabbitmq_start() {
  log "Starting RabbitMQ (rabbitmq-server -detached)."
  as_root rabbitmq-server -detached
}

ensure_rabbitmq() {
  local url=${RACCORDO__AMQP__URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
  local host port
  host=$(url_host "$url")
  port=$(url_port "$url" 5672)
  port_open "$host" "$port" && return 0

  if ! is_local "$host"; then
    log "RabbitMQ is not answering on $host:$port (from RACCORDO__AMQP__URL); start it there."
    return 1
  fi
  if rabbitmq_installed && can_root; then
    rabbitmq_start
  elif apt_install rabbitmq-server; then
    port_open "$host" "$port" || rabbitmq_start
  elif compose_works; then
    compose_up rabbitmq
    log "The compose broker has no guest user: use"
    log "  export RACCORDO__AMQP__URL='amqp://raccordo:raccordo@127.0.0.1:5672/%2f'"
  else
    log "RabbitMQ is not answering on $host:$port and cannot be provided here:"
    rabbitmq_installed || log "  - rabbitmq-server is not installed;"
    can_root || log "  - not root and no passwordless sudo, so it can neither be started nor installed;"
    command -v apt-get >/dev/null || log "  - there is no apt-get to install it with;"
    log "  - 'docker compose' is not available (no Docker client, compose plugin or engine)."
    log "Provide one: install and start RabbitMQ 3.x (Debian: apt-get install rabbitmq-server;"
    log "rabbitmq-server -detached), run 'docker compose -f $COMPOSE_FILE up -d rabbitmq',"
    log "or set RACCORDO__AMQP__URL to a broker you have."
    return 1
  fi
  wait_port RabbitMQ "$host" "$port" || return 1
  log "RabbitMQ is up on $host:$port."
}

# ---------------------------------------------------------------------------- PostgreSQL

newest_subdir() { find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1; }
pg_version() { newest_subdir /etc/postgresql; }
pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && command -v pg_ctlcluster >/dev/null; }

pg_start() {
  local version
  version=$(pg_version)
  if [[ -z $version ]]; then
    version=$(newest_subdir /usr/lib/postgresql)
    log "Creating PostgreSQL cluster $version/main."
    as_root pg_createcluster "$version" main >/dev/null
  fi
  log "Starting PostgreSQL $version/main (pg_ctlcluster)."
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

# The hub's default database.url connects as `postgres` over TCP without a password.
pg_connects() { PGCONNECT_TIMEOUT=5 psql -h "$1" -p "$2" -U postgres -d postgres -w -Atqc 'SELECT 1' >/dev/null 2>&1; }

pg_trust_loopback() { # host port
  local version hba tmp
  version=$(pg_version)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if [[ -z $version || ! -f $hba ]] || ! can_root; then
    log "PostgreSQL on $1:$2 refuses user postgres without a password, and its pg_hba.conf is not"
    log "here to change: allow it (trust for 127.0.0.1/32 and ::1/128) or set RACCORDO__DATABASE__URL."
    return 1
  fi
  log "Allowing passwordless connections from 127.0.0.1 and ::1 ($hba)."
  tmp=$(mktemp)
  {
    echo '# scripts/services.sh: local development, no password over loopback TCP'
    echo 'host    all    all    127.0.0.1/32    trust'
    echo 'host    all    all    ::1/128         trust'
    cat "$hba"
  } >"$tmp"
  as_root cp "$tmp" "$hba" # cp into the existing file keeps its owner and mode
  rm -f "$tmp"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload || return 1
  pg_connects "$1" "$2" || { log "PostgreSQL still refuses user postgres on $1:$2; see $hba."; return 1; }
}

ensure_postgres() {
  local url=${RACCORDO__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/raccordo}
  local host port
  host=$(url_host "$url")
  port=$(url_port "$url" 5432)

  if ! port_open "$host" "$port"; then
    if ! is_local "$host"; then
      log "PostgreSQL is not answering on $host:$port (from RACCORDO__DATABASE__URL); start it there."
      return 1
    fi
    if pg_server_installed && can_root; then
      pg_start
    elif apt_install postgresql; then
      port_open "$host" "$port" || pg_start
    elif compose_works; then
      compose_up postgres
    else
      log "PostgreSQL is not answering on $host:$port and cannot be provided here:"
      pg_server_installed || log "  - the PostgreSQL server is not installed;"
      can_root || log "  - not root and no passwordless sudo, so it can neither be started nor installed;"
      command -v apt-get >/dev/null || log "  - there is no apt-get to install it with;"
      log "  - 'docker compose' is not available (no Docker client, compose plugin or engine)."
      log "Provide one: install and start PostgreSQL (Debian: apt-get install postgresql;"
      log "pg_ctlcluster --skip-systemctl-redirect VERSION main start), run"
      log "'docker compose -f $COMPOSE_FILE up -d postgres', or set RACCORDO__DATABASE__URL."
      return 1
    fi
    wait_port PostgreSQL "$host" "$port" || return 1
    log "PostgreSQL is up on $host:$port."
  fi

  # With the default URL, make sure the hub can log in as it will.
  if [[ -z ${RACCORDO__DATABASE__URL:-} ]] && command -v psql >/dev/null && ! pg_connects "$host" "$port"; then
    pg_trust_loopback "$host" "$port"
  fi
}

# ---------------------------------------------------------------------------- Dovecot (IMAP)
#
# Never the system's Dovecot service: a Dovecot of the project's own, started as a normal
# process with its own configuration, port, state and mail folder under DOVECOT_DIR (default
# target/dovecot), and a passwd-file user `raccordo` / `raccordo` whose mailboxes the tests
# create one per test. Plain IMAP on loopback only (CONTRACT §11 allows it there).

DOVECOT_PORT=${RACCORDO_DOVECOT_PORT:-10143}
# As root, Dovecot's own user (`dovecot`) reads the users file and the maildirs: a checkout under
# a private directory (mktemp -d makes it 0700) would lock it out, so root's Dovecot lives under
# /var/tmp, one directory per checkout.
if [[ -n ${RACCORDO_DOVECOT_DIR:-} ]]; then
  DOVECOT_DIR=$RACCORDO_DOVECOT_DIR
elif ((EUID == 0)); then
  DOVECOT_DIR=/var/tmp/raccordo-dovecot-$(printf '%s' "$PWD" | cksum | cut -d' ' -f1)
else
  DOVECOT_DIR=$PWD/target/dovecot
fi

dovecot_installed() { [[ -x /usr/sbin/dovecot ]] || command -v dovecot >/dev/null; }
dovecot_bin() { if [[ -x /usr/sbin/dovecot ]]; then echo /usr/sbin/dovecot; else command -v dovecot; fi; }

# Installs dovecot-imapd without letting the package start the system's service (a
# policy-rc.d that denies every start while apt runs, as Debian's policy-rc.d contract has it).
dovecot_install() {
  command -v apt-get >/dev/null && can_root || return 1
  local policy=/usr/sbin/policy-rc.d placed=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    placed=1
  fi
  local status=0
  apt_install dovecot-imapd || status=1
  ((placed == 0)) || as_root rm -f "$policy"
  return "$status"
}

# The user Dovecot's mail processes run as: Dovecot refuses UID 0 for mail, so as root the
# package's `dovecot` user; otherwise whoever runs this script.
dovecot_mail_user() { if ((EUID == 0)); then echo dovecot; else id -un; fi; }

dovecot_write_config() {
  local mail_user internal login uid gid
  mail_user=$(dovecot_mail_user)
  uid=$(id -u "$mail_user")
  gid=$(id -g "$mail_user")
  if ((EUID == 0)); then internal=dovecot login=dovenull; else internal=$mail_user login=$mail_user; fi
  mkdir -p "$DOVECOT_DIR/run" "$DOVECOT_DIR/state" "$DOVECOT_DIR/mail"
  ((EUID != 0)) || chown "$uid:$gid" "$DOVECOT_DIR/mail"
  # {PLAIN}: a test password on a loopback-only server.
  echo 'raccordo:{PLAIN}raccordo::::::' >"$DOVECOT_DIR/users"
  cat >"$DOVECOT_DIR/dovecot.conf" <<CONF
# Written by scripts/services.sh: the project's own Dovecot, not the system's.
base_dir = $DOVECOT_DIR/run
state_dir = $DOVECOT_DIR/state
instance_name = raccordo-dovecot
log_path = $DOVECOT_DIR/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $internal
default_login_user = $login
first_valid_uid = $uid
last_valid_uid = $uid
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVECOT_DIR/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$DOVECOT_DIR/mail/%u
}
mail_location = maildir:~/Maildir
# Many tests idle at once on one user.
mail_max_userip_connections = 1000
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVECOT_PORT
  }
  inet_listener imaps {
    port = 0
  }
  process_min_avail = 1
}
service imap {
  process_limit = 1024
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
protocol imap {
  imap_idle_notify_interval = 2 mins
}
CONF
  # Dovecot checks that its own config and base_dir are not writable by others.
  chmod 0755 "$DOVECOT_DIR" "$DOVECOT_DIR/run"
}

ensure_dovecot() {
  local host=127.0.0.1 bin
  port_open "$host" "$DOVECOT_PORT" && return 0
  if ! dovecot_installed; then
    if ! dovecot_install; then
      log "Dovecot (IMAP) is not installed and cannot be installed here:"
      can_root || log "  - not root and no passwordless sudo;"
      command -v apt-get >/dev/null || log "  - there is no apt-get to install it with;"
      log "Install Debian's dovecot-imapd (apt-get install dovecot-imapd) and run this again."
      return 1
    fi
  fi
  bin=$(dovecot_bin)
  dovecot_write_config
  log "Starting the project's Dovecot on $host:$DOVECOT_PORT ($DOVECOT_DIR)."
  # Its own log; the daemon must not hold this script's output open.
  if ! "$bin" -c "$DOVECOT_DIR/dovecot.conf" </dev/null >>"$DOVECOT_DIR/dovecot.out" 2>&1; then
    log "Dovecot did not start; see $DOVECOT_DIR/dovecot.log."
    return 1
  fi
  wait_port Dovecot "$host" "$DOVECOT_PORT" || { tail -n 20 "$DOVECOT_DIR/dovecot.log" >&2 || true; return 1; }
  log "Dovecot is up on $host:$DOVECOT_PORT (user raccordo, password raccordo)."
}

# `scripts/services.sh stop-dovecot`: stops the project's Dovecot (never the system's).
if [[ ${1:-} == stop-dovecot ]]; then
  if [[ -f $DOVECOT_DIR/dovecot.conf ]]; then "$(dovecot_bin)" -c "$DOVECOT_DIR/dovecot.conf" stop; fi
  exit 0
fi

status=0
ensure_rabbitmq || status=1
ensure_postgres || status=1
ensure_dovecot || status=1
exit "$status"
