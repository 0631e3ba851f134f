#!/usr/bin/env bash
# influx-archive installer: turns a fresh Raspberry Pi OS / Debian machine into a working archive.
# Safe to run again: every step checks before it changes anything.
#
#   sudo ./install.sh --demo                      local InfluxDB 1.x with synthetic data, then a first load
#   sudo ./install.sh --influx-url URL --influx-org ORG --influx-token-file FILE [--language influxql]
#   sudo ./install.sh --lan 192.168.1.0/24        also let Grafana on that network read the archive
#   sudo ./install.sh --backup-dir /mnt/usb/influx-archive   nightly backups to a mounted drive
#   sudo ./install.sh --restore FILE              a new Pi: restore a backup before the first load
#   sudo ./install.sh --uninstall [--purge]       remove schedule, command and venv (--purge: also data, code, logs)
#
# Sourcing it (`. ./install.sh`) defines the steps without running them (tests do that).
set -euo pipefail

APP_NAME=influx-archive
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The code is deployed here, so the schedule never depends on where the clone lives (a home directory
# may be private to its user, and a clone may be moved or deleted).
APP_DIR=/opt/$APP_NAME
APP_FILES=(loader setup crontab.txt .env.example requirements.txt install.sh)
VENV=$APP_DIR/.venv
ENV_FILE=$APP_DIR/.env
LOG_DIR=/var/log/$APP_NAME
LOG=$LOG_DIR/loader.log
INSTALL_LOG=$LOG_DIR/install.log
LOCK=/run/lock/$APP_NAME.lock
BACKUP_LOG=$LOG_DIR/backup.log
BACKUP_LOCK=/run/lock/$APP_NAME-backup.lock
CRON_FILE=/etc/cron.d/$APP_NAME
LOGROTATE_FILE=/etc/logrotate.d/$APP_NAME
COMMAND_FILE=/usr/local/bin/$APP_NAME  # the loader as the service user, from any directory (setup/command.sh)
SYSTEMD_DIR=/etc/systemd/system
SYSTEMD_UNITS=("$APP_NAME.service" "$APP_NAME.timer" "$APP_NAME-backup.service" "$APP_NAME-backup.timer"
               "$APP_NAME-verify.service" "$APP_NAME-verify.timer")
DEMO_MARK="# the demo's InfluxDB (install.sh --demo): loopback only, it has no auth"
DEMO_URL=http://127.0.0.1:8086
# The pid file of Debian's init script for influxdb: the demo's server started directly (a container without
# an init system) writes it too, so it alone is stopped, never another influxd of the same user.
DEMO_PIDFILE=/var/run/influxdb/influxd.pid
DB_NAME=influx_archive
LOADER_ROLE=influx_archive
GRAFANA_ROLE=grafana_reader
SYSTEM_PYTHON=/usr/bin/python3
SUPPORTED_ARCHS="armhf arm64 amd64"
SUPPORTED_RELEASES="12 13"
# The loader's whole runtime is python3-psycopg2, python3-urllib3 and python3-dotenv: from apt, so a Pi
# downloads nothing from PyPI and compiles nothing (README, "Why so few dependencies").
APT_PACKAGES=(postgresql python3-venv python3-psycopg2 python3-urllib3 python3-dotenv
              cron logrotate util-linux ca-certificates rsync openssl)
TLS_DIR_NAME=influx-archive-tls  # in the cluster's /etc/postgresql/V/C: the Pi's own CA and server certificate

# Options (set by parse_args)
DEMO=0 USE_SYSTEMD=0 UNINSTALL=0 PURGE=0 ADOPT_REFERENCE=0 ASSUME_YES=0 REPLACE_DEMO=0 REPORTS=0
LAN_CIDR="" SERVICE_USER="" INFLUX_URL_OPT="" INFLUX_ORG_OPT="" INFLUX_TOKEN_FILE_OPT=""
INFLUX_BUCKET_OPT="" LANGUAGE_OPT="" BACKUP_DIR_OPT="" RESTORE_FILE=""
PG_VERSION="" PG_CLUSTER=main ARCH="" RELEASE=""

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --demo                  install InfluxDB 1.x locally, seed synthetic data, archive it (InfluxQL)
  --influx-url URL        InfluxDB URL (else asked on a terminal; left to .env otherwise)
  --influx-org ORG        organisation (Flux)
  --influx-token-file F   file holding the read token (kept out of argv and shell history)
  --bucket NAME           bucket (default pulse_oximeter)
  --language flux|influxql
  --lan CIDR              listen on the LAN and allow the Grafana role from CIDR only
  --systemd               schedule with a systemd timer instead of cron
  --user NAME             run the loader as NAME (default: the sudo user, else a system user)
  --adopt-reference       adopt a table made by the reference script (dedupe, key, labels to window start)
  --replace-demo          after --demo: load your InfluxDB (the options above) instead; the demo's rows are
                          dropped and its InfluxDB stopped
  --reports               also install python3-matplotlib and apprise: `influx-archive report` (a night on one
                          page), REPORT_DIR (set to BACKUP_DIR/reports with --backup-dir) and NOTIFY_URL
  --backup-dir DIR        set BACKUP_DIR: nightly dumps there (an existing directory on a mounted drive)
  --restore FILE          restore a dump made by `backup` before the first load (a new Pi, an empty archive)
  --uninstall [--purge]   remove schedule, command and venv; --purge also the database, roles, code, .env,
                          logs and the demo's InfluxDB (the dumps in BACKUP_DIR are kept)
  -y, --yes               do not ask
EOF
}

STEP="" STEP_LINES=0  # what say() announced last, and the install log's length then: shown when a command fails
say() {
  STEP=$*
  printf '\033[1m==>\033[0m %s\n' "$*" | tee -a "$INSTALL_LOG" >&2
  STEP_LINES=$(wc -l < "$INSTALL_LOG" 2>/dev/null || echo 0)
}
ok()   { printf '    ok: %s\n' "$*" | tee -a "$INSTALL_LOG" >&2; }
warn() { printf '    warning: %s\n' "$*" | tee -a "$INSTALL_LOG" >&2; }
die()  { DIED=1; printf 'install.sh: %s\n' "$*" | tee -a "$INSTALL_LOG" >&2; exit 1; }
# die_log LOG "message": the message, then LOG's last lines (the reason), on the screen as in the install log
die_log() {
  local log=$1; shift
  DIED=1
  { printf 'install.sh: %s; the last lines of %s:\n' "$*" "$log"; tail -n 12 "$log" 2>/dev/null | sed 's/^/    /'; } \
    | tee -a "$INSTALL_LOG" >&2
  exit 1
}
# A command that failed outside die (set -e): name the step and show the install log's last lines, which
# hold the failed command's own words (most steps send their output there).
on_exit() {
  local code=$?
  [ "$code" -ne 0 ] && [ -z "${DIED:-}" ] && [ -n "$STEP" ] || return 0
  local said
  said=$(tail -n "+$((STEP_LINES + 1))" "$INSTALL_LOG" 2>/dev/null | tail -n 12)
  if [ -n "$said" ]; then
    printf 'install.sh: "%s" failed (exit %s); the last lines of %s:\n%s\n' "$STEP" "$code" "$INSTALL_LOG" \
      "$(printf '%s\n' "$said" | sed 's/^/    /')" >&2
  else
    printf 'install.sh: "%s" failed (exit %s), saying nothing in %s; to see each command run it again as: sudo bash -x ./install.sh (same options)\n' \
      "$STEP" "$code" "$INSTALL_LOG" >&2
  fi
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --demo) DEMO=1 ;;
      --systemd) USE_SYSTEMD=1 ;;
      --uninstall) UNINSTALL=1 ;;
      --purge) PURGE=1 ;;
      --adopt-reference) ADOPT_REFERENCE=1 ;;
      --replace-demo) REPLACE_DEMO=1 ;;
      --reports) REPORTS=1 ;;
      -y|--yes) ASSUME_YES=1 ;;
      --lan) LAN_CIDR=${2:?--lan needs a CIDR such as 192.168.1.0/24}; shift ;;
      --user) SERVICE_USER=${2:?--user needs a name}; shift ;;
      --influx-url) INFLUX_URL_OPT=${2:?}; shift ;;
      --influx-org) INFLUX_ORG_OPT=${2:?}; shift ;;
      --influx-token-file) INFLUX_TOKEN_FILE_OPT=${2:?}; shift ;;
      --bucket) INFLUX_BUCKET_OPT=${2:?}; shift ;;
      --language) LANGUAGE_OPT=${2:?}; shift ;;
      --backup-dir) BACKUP_DIR_OPT=${2:?--backup-dir needs a directory}; shift ;;
      --restore) RESTORE_FILE=${2:?--restore needs a dump file}; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
    shift
  done
  if [ -n "$LAN_CIDR" ] && ! [[ "$LAN_CIDR" =~ ^[0-9a-fA-F:.]+/[0-9]{1,3}$ ]]; then
    die "--lan takes a network such as 192.168.1.0/24, not $LAN_CIDR"
  fi
  case "$LANGUAGE_OPT" in ""|flux|influxql) ;; *) die "--language is flux or influxql" ;; esac
}

check_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
  mkdir -p "$LOG_DIR"
  touch "$INSTALL_LOG"
}

# dpkg's architecture, not uname -m: a 32-bit Pi OS may run a 64-bit kernel.
detect_system() {
  ARCH=$(dpkg --print-architecture 2>/dev/null) || die "dpkg not found: this installer is for Debian and Raspberry Pi OS"
  RELEASE=$(. /etc/os-release && echo "${VERSION_ID:-}")
  case " $SUPPORTED_ARCHS " in *" $ARCH "*) ;; *) die "architecture $ARCH is not supported (armhf, arm64, amd64)" ;; esac
  case " $SUPPORTED_RELEASES " in
    *" $RELEASE "*) ;;
    *) die "Debian release ${RELEASE:-unknown} is not supported (12 bookworm, 13 trixie)" ;;
  esac
  ok "Debian $RELEASE on $ARCH$(has_systemd && echo ', systemd' || echo ', no systemd')"
}

has_systemd() { [ -d /run/systemd/system ]; }

install_packages() {
  local wanted=("${APT_PACKAGES[@]}") missing=() pkg
  [ "$DEMO" -eq 1 ] && wanted+=(influxdb)
  [ "$REPORTS" -eq 1 ] && wanted+=(python3-matplotlib apprise)  # reports and messages (optional: tens of MB)
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then ok "packages already installed"; return; fi
  say "installing with apt: ${missing[*]}"
  apt-get update -qq >>"$INSTALL_LOG" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$INSTALL_LOG" 2>&1 \
    || die_log "$INSTALL_LOG" "apt-get install failed"
  ok "installed ${missing[*]}"
}

choose_service_user() {
  if [ -z "$SERVICE_USER" ]; then
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then SERVICE_USER=$SUDO_USER; else SERVICE_USER=$APP_NAME; fi
  fi
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    ok "created system user $SERVICE_USER"
  fi
  chown "$SERVICE_USER:" "$LOG_DIR"
  local log
  for log in "$LOG" "$BACKUP_LOG"; do
    touch "$log" && chown "$SERVICE_USER:" "$log" && chmod 0640 "$log"
  done
}

find_postgres() {
  local line
  line=$(pg_lsclusters --no-header 2>/dev/null | awk '$2 == "main" {print $1; exit}')
  if [ -z "$line" ]; then
    PG_VERSION=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
    [ -n "$PG_VERSION" ] || die "PostgreSQL server not found after installing it"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >>"$INSTALL_LOG" 2>&1
    ok "created PostgreSQL $PG_VERSION cluster $PG_CLUSTER"
  else
    PG_VERSION=$line
  fi
}

pg_conf_dir() { echo "/etc/postgresql/$PG_VERSION/$PG_CLUSTER"; }

configure_postgres() {
  local confd changed=0
  confd=$(pg_conf_dir)/conf.d
  mkdir -p "$confd"
  if ! cmp -s "$SRC_DIR/setup/postgresql/influx-archive.conf" "$confd/influx-archive.conf"; then
    install -m 0644 "$SRC_DIR/setup/postgresql/influx-archive.conf" "$confd/influx-archive.conf"
    changed=1
  fi
  local tls_dir tls_conf
  tls_dir=$(pg_conf_dir)/$TLS_DIR_NAME
  make_tls "$tls_dir"
  tls_conf=$(tls_settings "$tls_dir")
  if [ "$(cat "$confd/influx-archive-tls.conf" 2>/dev/null)" != "$tls_conf" ]; then
    printf '%s\n' "$tls_conf" > "$confd/influx-archive-tls.conf"
    chmod 0644 "$confd/influx-archive-tls.conf"
    changed=1
  fi
  if [ -n "$LAN_CIDR" ]; then
    local lan_conf="$confd/influx-archive-lan.conf"
    if [ "$(cat "$lan_conf" 2>/dev/null)" != "listen_addresses = '*'" ]; then
      echo "listen_addresses = '*'" > "$lan_conf"
      chmod 0644 "$lan_conf"
      changed=1
    fi
    set_lan_hba "$(pg_conf_dir)/pg_hba.conf" && changed=1
  fi
  start_postgres "$changed"
  ok "PostgreSQL $PG_VERSION configured for an SD card (conf.d/influx-archive.conf)"
}

# The LAN line of pg_hba.conf: TLS only (hostssl; a plain connection from the LAN matches no line and is
# refused), the Grafana role, this database, the password by SCRAM.
lan_hba_line() { printf 'hostssl    %s    %s    %s    scram-sha-256' "$DB_NAME" "$GRAFANA_ROLE" "$LAN_CIDR"; }

# set_lan_hba HBA: the LAN line once, at the end, replacing the plain `host` line an earlier version wrote for
# the same network; returns 0 when the file changed.
set_lan_hba() {
  local hba=$1 old
  old="host    $DB_NAME    $GRAFANA_ROLE    $LAN_CIDR    scram-sha-256"
  {
    grep -vxF -e "$old" -e "$(lan_hba_line)" -e '# influx-archive: Grafana reads from the LAN (install.sh --lan)' \
      -e '# influx-archive: Grafana reads from the LAN, over TLS only (install.sh --lan)' "$hba" || true
    printf '# influx-archive: Grafana reads from the LAN, over TLS only (install.sh --lan)\n%s\n' "$(lan_hba_line)"
  } > "$hba.new"
  if cmp -s "$hba" "$hba.new"; then rm -f "$hba.new"; return 1; fi
  chmod --reference="$hba" "$hba.new"
  chown --reference="$hba" "$hba.new"
  mv "$hba.new" "$hba"
}

# make_tls DIR: the Pi's own small CA (ca.crt; its key ca.key, root's alone) and PostgreSQL's server
# certificate signed by it (server.crt, server.key: the postgres user's). Grafana verifies the server by
# ca.crt (sslmode verify-ca; the provisioning file carries it). Kept on a re-run while valid, so the file
# given to Grafana stays right; the server certificate is signed again 30 days before it ends.
make_tls() {
  local dir=$1 host
  host=$(hostname)
  mkdir -p "$dir"
  chmod 0755 "$dir"
  if ! openssl x509 -checkend 2592000 -noout -in "$dir/ca.crt" >/dev/null 2>&1 || [ ! -s "$dir/ca.key" ]; then
    (umask 077; openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 \
       -days 3650 -subj "/CN=influx-archive CA on $host" -addext "basicConstraints=critical,CA:TRUE" \
       -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$dir/ca.key" -out "$dir/ca.crt") \
      >>"$INSTALL_LOG" 2>&1 || die_log "$INSTALL_LOG" "making the Pi's certificate authority failed"
    rm -f "$dir/server.crt"
  fi
  if ! openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" >/dev/null 2>&1 \
     || ! openssl x509 -checkend 2592000 -noout -in "$dir/server.crt" >/dev/null 2>&1; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n' \
      "$host" > "$dir/server.ext"
    (umask 077; openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -subj "/CN=$host" \
       -keyout "$dir/server.key" -out "$dir/server.csr" \
     && openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -sha256 \
       -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt") \
      >>"$INSTALL_LOG" 2>&1 || die_log "$INSTALL_LOG" "making PostgreSQL's certificate failed"
    rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
  fi
  chmod 0644 "$dir/ca.crt" "$dir/server.crt"
  chmod 0600 "$dir/ca.key" "$dir/server.key"
  chown postgres: "$dir/server.crt" "$dir/server.key"
}

# PostgreSQL's TLS settings for the certificate in DIR (conf.d/influx-archive-tls.conf).
tls_settings() {
  printf "ssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\nssl_min_protocol_version = 'TLSv1.2'" "$1" "$1"
}

start_postgres() {
  local restart=${1:-0}
  if pg_lsclusters --no-header | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c' | grep -q online; then
    if [ "$restart" -eq 1 ]; then pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart >>"$INSTALL_LOG" 2>&1; fi
  elif has_systemd; then
    systemctl enable --now "postgresql@$PG_VERSION-$PG_CLUSTER" >>"$INSTALL_LOG" 2>&1
  else
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >>"$INSTALL_LOG" 2>&1
  fi
  local _
  for _ in $(seq 1 30); do
    runuser -u postgres -- psql -p "$(pg_port)" -Atqc 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 1
  done
  die_log "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log" "PostgreSQL $PG_VERSION/$PG_CLUSTER did not start"
}

pg_port() { pg_lsclusters --no-header | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c {print $3}'; }

env_get() { "$SYSTEM_PYTHON" "$SRC_DIR/setup/envfile.py" get "$ENV_FILE" "$1"; }

new_password() { "$SYSTEM_PYTHON" -c 'import secrets; print(secrets.token_hex(24))'; }

# Passwords stay what .env already says (so re-runs change nothing), else are generated.
# They reach psql on its standard input, never on a command line.
create_roles() {
  local loader_pw grafana_pw url
  url=$(env_get PG_URL)
  loader_pw=$(printf '%s' "$url" | sed -n 's#^[a-z0-9+]*://[^:/@]*:\([^@]*\)@.*#\1#p')
  grafana_pw=$(env_get GRAFANA_PG_PASSWORD)
  [ -n "$loader_pw" ] || loader_pw=$(new_password)
  [ -n "$grafana_pw" ] || grafana_pw=$(new_password)
  LOADER_PW=$loader_pw GRAFANA_PW=$grafana_pw
  {
    printf '\\set loader_role %s\n\\set grafana_role %s\n\\set dbname %s\n' "$LOADER_ROLE" "$GRAFANA_ROLE" "$DB_NAME"
    printf '\\set loader_pw %s\n\\set grafana_pw %s\n' "$loader_pw" "$grafana_pw"
    cat "$SRC_DIR/setup/roles.sql"
  } | runuser -u postgres -- psql -p "$(pg_port)" -X -q -d postgres >>"$INSTALL_LOG" 2>&1 \
    || die_log "$INSTALL_LOG" "creating roles failed"
  ok "database $DB_NAME owned by $LOADER_ROLE (not superuser); $GRAFANA_ROLE can only read"
}

install_code() {
  local item changed=0
  mkdir -p "$APP_DIR"
  for item in "${APP_FILES[@]}"; do
    if ! diff -rq -x __pycache__ "$SRC_DIR/$item" "$APP_DIR/$item" >/dev/null 2>&1; then
      rm -rf "${APP_DIR:?}/$item"
      cp -R "$SRC_DIR/$item" "$APP_DIR/$item"
      changed=1
    fi
  done
  find "$APP_DIR" -name __pycache__ -prune -o -print0 | xargs -0 chmod go+rX,go-w
  ok "code in $APP_DIR$([ "$changed" -eq 1 ] && echo ' (updated)' || echo ' (unchanged)')"
}

# setup/grafana/datasource.yaml with the port this cluster listens on (5433 or later when 5432 was taken):
# the file to copy to the Grafana machine.
# With the Pi's CA certificate in it (setup/grafana/datasource.yaml's @CA_CERT@), so Grafana verifies the
# server it reads (sslmode verify-ca).
grafana_datasource() {
  local port ca line
  port=$(pg_port)
  ca=$(pg_conf_dir)/$TLS_DIR_NAME/ca.crt
  [ -s "$ca" ] || die "no CA certificate at $ca to put in the Grafana data source file"
  while IFS= read -r line; do
    if [ "$line" = "        @CA_CERT@" ]; then sed 's/^/        /' "$ca"; else printf '%s\n' "$line"; fi
  done < "$APP_DIR/setup/grafana/datasource.yaml" \
    | sed "s#\${INFLUX_ARCHIVE_HOST}:5432#\${INFLUX_ARCHIVE_HOST}:$port#" > "$APP_DIR/grafana-datasource.yaml"
  chmod 0644 "$APP_DIR/grafana-datasource.yaml"
}

# The Grafana dashboard that fits .env (PG_SCHEMA, PG_TABLE; TAGS=uid: a device choice; SUBJECT=child: a
# child's bands): the file to import, written again on every run of install.sh, so a renamed table or a
# second oximeter needs no JSON edited by hand.
grafana_dashboard() {
  local table schema tags subject
  table=$(env_get PG_TABLE) schema=$(env_get PG_SCHEMA) tags=$(env_get TAGS) subject=$(env_get SUBJECT)
  if "$VENV/bin/python" "$APP_DIR/setup/dashboard.py" --out "$APP_DIR/grafana-dashboard.json" \
       --table "${table:-pox_five_second_mean}" --schema "${schema:-public}" --tags "$tags" \
       --subject "${subject:-adult}" 2>>"$INSTALL_LOG"; then
    chmod 0644 "$APP_DIR/grafana-dashboard.json"
    "$VENV/bin/python" "$APP_DIR/setup/alerts.py" --out "$APP_DIR/grafana-alert-rules.yaml" \
      --table "${table:-pox_five_second_mean}" --schema "${schema:-public}" --tags "$tags" \
      --subject "${subject:-adult}" 2>>"$INSTALL_LOG" && chmod 0644 "$APP_DIR/grafana-alert-rules.yaml"
  else
    warn "no dashboard written for TAGS=$tags (see $INSTALL_LOG); import setup/grafana/dashboard-devices.json and edit its SQL"
  fi
}

# The venv (--system-site-packages, no pip) only isolates the loader from other Python programs; its
# packages are apt's. One that an earlier version filled with pip packages (influxdb-client, reactivex)
# is made anew, so nothing unused stays on the SD card.
venv_has_own_packages() {
  find "$VENV"/lib/python3*/site-packages -mindepth 1 -maxdepth 1 \
    ! -name 'pip' ! -name 'pip-*' ! -name 'setuptools' ! -name 'setuptools-*' ! -name 'pkg_resources' \
    ! -name '_distutils_hack' ! -name 'distutils-precedence.pth' ! -name '__pycache__' 2>/dev/null | grep -q .
}

create_venv() {
  if [ -x "$VENV/bin/python" ] && venv_has_own_packages; then
    rm -rf "$VENV"
    say "the venv held packages the loader no longer uses: made anew"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    "$SYSTEM_PYTHON" -m venv --system-site-packages --without-pip "$VENV" >>"$INSTALL_LOG" 2>&1
  fi
  "$VENV/bin/python" -c 'import psycopg2, dotenv, urllib3' 2>>"$INSTALL_LOG" \
    || die_log "$INSTALL_LOG" "the venv cannot import psycopg2, dotenv and urllib3 (apt's python3-psycopg2, python3-dotenv, python3-urllib3)"
  ok "venv $VENV (apt's psycopg2, urllib3 and python-dotenv; nothing from PyPI)"
}

ask() {  # ask VAR "question" [default]: only on a terminal and without --yes
  local var=$1 question=$2 default=${3:-} answer=""
  if [ "$ASSUME_YES" -eq 0 ] && [ -t 0 ]; then
    read -r -p "$question${default:+ [$default]}: " answer
  fi
  printf -v "$var" '%s' "${answer:-$default}"
}

write_env() {
  if [ ! -f "$ENV_FILE" ] && [ -f "$SRC_DIR/.env" ] && [ "$SRC_DIR" != "$APP_DIR" ]; then
    install -m 0600 "$SRC_DIR/.env" "$ENV_FILE"  # settings the user already wrote in the clone
    ok "took $SRC_DIR/.env as $ENV_FILE"
  fi
  if [ -f "$ENV_FILE" ] && [ -f "$SRC_DIR/.env" ] && [ "$SRC_DIR" != "$APP_DIR" ] && ! cmp -s "$SRC_DIR/.env" "$ENV_FILE"; then
    warn "$SRC_DIR/.env is not what runs: the installed settings are $ENV_FILE (edit that one)"
  fi
  if [ -f "$ENV_FILE" ]; then
    local added differ
    added=$(IA_SET_GRAFANA_PG_PASSWORD=$GRAFANA_PW IA_SET_LOG_FILE=$LOG "$SYSTEM_PYTHON" "$APP_DIR/setup/envfile.py" add-missing "$ENV_FILE")
    differ=$(env_differences)
    if [ -n "$differ" ] && demo_source_in_use; then
      [ "$REPLACE_DEMO" -eq 1 ] \
        || die "$ENV_FILE loads the demo's synthetic readings, and the options given differ ($(echo "$differ" | paste -sd ';' | sed 's/;/; /g')): to load your InfluxDB instead, dropping the demo's rows, add --replace-demo"
      replace_demo
    elif [ -n "$differ" ]; then
      die "the options given differ from $ENV_FILE ($(echo "$differ" | paste -sd ';' | sed 's/;/; /g')); install.sh never overwrites settings: edit $ENV_FILE (then \`$APP_NAME check\`), or run it without those options"
    else
      ok "$ENV_FILE exists; kept as it is${added:+ (added $added)}"
    fi
  else
    local url org bucket language token_file
    if [ "$DEMO" -eq 1 ]; then
      url=$DEMO_URL language=influxql bucket=pulse_oximeter org="" token_file=""
    else
      url=$INFLUX_URL_OPT; [ -n "$url" ] || ask url "InfluxDB URL (e.g. https://eu-central-1-1.aws.cloud2.influxdata.com)"
      language=$LANGUAGE_OPT; [ -n "$language" ] || ask language "Query language: flux (Cloud TSM, OSS 2) or influxql (Cloud Serverless)" flux
      org=$INFLUX_ORG_OPT; [ -n "$org" ] || [ "$language" = influxql ] || ask org "InfluxDB organisation"
      bucket=$INFLUX_BUCKET_OPT; [ -n "$bucket" ] || ask bucket "Bucket (InfluxQL: the database its DBRP mapping names)" pulse_oximeter
      token_file=$INFLUX_TOKEN_FILE_OPT
    fi
    local token=""
    if [ -n "$token_file" ]; then
      token=$(cat "$token_file") || die "cannot read $token_file"
    elif [ "$DEMO" -eq 0 ] && [ "$ASSUME_YES" -eq 0 ] && [ -t 0 ]; then
      read -r -s -p "InfluxDB read token (not shown): " token; echo >&2
    fi
    IA_SET_PG_URL="postgresql+psycopg2://$LOADER_ROLE:$LOADER_PW@127.0.0.1:$(pg_port)/$DB_NAME" \
    IA_SET_GRAFANA_PG_PASSWORD=$GRAFANA_PW IA_SET_LOG_FILE=$LOG \
    IA_SET_INFLUX_URL=$url IA_SET_INFLUX_QUERY_LANGUAGE=$language IA_SET_INFLUX_BUCKET=$bucket \
    IA_SET_INFLUX_ORG=$org IA_SET_INFLUX_TOKEN=$token \
    IA_SET_VALID_RANGES=spo2=50..100,bpm=20..250 \
      "$SYSTEM_PYTHON" "$APP_DIR/setup/envfile.py" create "$ENV_FILE" "$APP_DIR/.env.example"
    ok "wrote $ENV_FILE from .env.example$([ -z "$url" ] && echo ' (fill in INFLUX_URL and the token)')"
  fi
  chown "$SERVICE_USER:" "$ENV_FILE"
  chmod 0600 "$ENV_FILE"
}

# Each option given on the command line that .env sets otherwise, one per line (a token is not shown).
env_differences() {
  local pair key given have
  for pair in "INFLUX_URL=$INFLUX_URL_OPT" "INFLUX_QUERY_LANGUAGE=$LANGUAGE_OPT" "INFLUX_ORG=$INFLUX_ORG_OPT" \
              "INFLUX_BUCKET=$INFLUX_BUCKET_OPT"; do
    key=${pair%%=*} given=${pair#*=}
    [ -n "$given" ] || continue
    have=$(env_get "$key")
    [ "$have" = "$given" ] || echo "$key: given $given, .env has ${have:-nothing}"
  done
  if [ -n "$INFLUX_TOKEN_FILE_OPT" ] && [ "$(cat "$INFLUX_TOKEN_FILE_OPT")" != "$(env_get INFLUX_TOKEN)" ]; then
    echo "INFLUX_TOKEN: $INFLUX_TOKEN_FILE_OPT holds another (not shown)"
  fi
}

demo_source_in_use() { [ "$(env_get INFLUX_URL)" = "$DEMO_URL" ] && grep -qsxF "$DEMO_MARK" /etc/default/influxdb; }

# The move from the demo to the person's InfluxDB: their settings in .env, the archive database made anew
# (no synthetic row stays beside their readings), the demo's InfluxDB stopped; the first run then loads
# INITIAL_LOOKBACK (30 days) of theirs.
replace_demo() {
  [ -n "$INFLUX_URL_OPT" ] || die "--replace-demo needs --influx-url (and --language, --influx-token-file as for a first install)"
  local token="" key
  if [ -n "$INFLUX_TOKEN_FILE_OPT" ]; then token=$(cat "$INFLUX_TOKEN_FILE_OPT") || die "cannot read $INFLUX_TOKEN_FILE_OPT"; fi
  for key in INFLUX_URL INFLUX_QUERY_LANGUAGE INFLUX_BUCKET INFLUX_ORG INFLUX_TOKEN; do
    IA_SET_INFLUX_URL=$INFLUX_URL_OPT IA_SET_INFLUX_QUERY_LANGUAGE=${LANGUAGE_OPT:-flux} \
    IA_SET_INFLUX_BUCKET=${INFLUX_BUCKET_OPT:-pulse_oximeter} IA_SET_INFLUX_ORG=$INFLUX_ORG_OPT \
    IA_SET_INFLUX_TOKEN=$token "$SYSTEM_PYTHON" "$APP_DIR/setup/envfile.py" set "$ENV_FILE" "$key"
  done
  runuser -u postgres -- psql -p "$(pg_port)" -X -q -d postgres -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >>"$INSTALL_LOG" 2>&1 || die_log "$INSTALL_LOG" "dropping the demo's archive failed"
  create_roles
  if is_demo_server "$INFLUX_URL_OPT"; then  # their readings are in the demo's own server: it stays, theirs now
    forget_demo_source
    ok "kept the local InfluxDB at $DEMO_URL running: $INFLUX_URL_OPT reads from it (loopback only, no auth)"
  else
    stop_demo_source
  fi
  ok "the demo is replaced: $ENV_FILE loads $INFLUX_URL_OPT, the archive starts empty"
}

install_demo_source() {
  [ "$DEMO" -eq 1 ] || return 0
  # the demo InfluxDB has no auth: keep it on loopback (Debian's default listens on every interface)
  if ! grep -qsxF "$DEMO_MARK" /etc/default/influxdb; then  # marked, so --uninstall --purge stops it
    if grep -qs '^INFLUXDB_HTTP_BIND_ADDRESS=' /etc/default/influxdb \
       && ! grep -qsx 'INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086' /etc/default/influxdb; then
      die "/etc/default/influxdb binds InfluxDB elsewhere than loopback; the demo's InfluxDB has no auth: remove that line, or install without --demo"
    fi
    local rest
    rest=$(grep -vxF 'INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086' /etc/default/influxdb 2>/dev/null || true)
    printf '%s\n%s\n%s\n' "$rest" "$DEMO_MARK" 'INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086' > /etc/default/influxdb
  fi
  if ! curl_ok "$DEMO_URL/ping"; then
    if has_systemd; then
      systemctl enable --now influxdb >>"$INSTALL_LOG" 2>&1
    elif ! service influxdb start >>"$INSTALL_LOG" 2>&1; then
      # e.g. a container, where the init script cannot raise its open-file limit: start it directly
      mkdir -p /var/log/influxdb "$(dirname "$DEMO_PIDFILE")" && chown influxdb: /var/log/influxdb "$(dirname "$DEMO_PIDFILE")"
      runuser -u influxdb -- env INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086 \
        setsid influxd -config /etc/influxdb/influxdb.conf -pidfile "$DEMO_PIDFILE" \
        >>/var/log/influxdb/influxd.log 2>&1 < /dev/null &
    fi
    local _
    for _ in $(seq 1 30); do curl_ok "$DEMO_URL/ping" && break; sleep 1; done
    curl_ok "$DEMO_URL/ping" || die_log "$INSTALL_LOG" "the local InfluxDB did not start (its own log: /var/log/influxdb/)"
  fi
  say "seeding the local InfluxDB with three days of synthetic 1 Hz readings"
  "$SYSTEM_PYTHON" "$APP_DIR/setup/demo_seed.py" --url "$DEMO_URL" --db pulse_oximeter --days 3 \
    2>&1 | tee -a "$INSTALL_LOG" >&2
}

curl_ok() { "$SYSTEM_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }

render() {  # render TEMPLATE: substitute the @PLACEHOLDERS@ of setup files
  sed -e "s#@NAME@#$APP_NAME#g" -e "s#@USER@#$SERVICE_USER#g" -e "s#@APP_DIR@#$APP_DIR#g" \
      -e "s#@PYTHON@#$VENV/bin/python#g" -e "s#@LOG@#$LOG#g" -e "s#@LOG_DIR@#$LOG_DIR#g" \
      -e "s#@LOCK@#$LOCK#g" -e "s#@BACKUP_LOG@#$BACKUP_LOG#g" -e "s#@BACKUP_LOCK@#$BACKUP_LOCK#g" "$1"
}

install_file() {  # install_file TEMPLATE DEST MODE: only when the content differs
  local tmp
  tmp=$(mktemp)
  render "$1" > "$tmp"
  if ! cmp -s "$tmp" "$2"; then install -D -m "$3" "$tmp" "$2"; fi
  rm -f "$tmp"
}

install_schedule() {
  install_file "$APP_DIR/setup/logrotate.conf" "$LOGROTATE_FILE" 0644
  install_file "$APP_DIR/setup/command.sh" "$COMMAND_FILE" 0755
  ok "command: $APP_NAME (e.g. \`$APP_NAME status\`), the loader as $SERVICE_USER with $ENV_FILE, from any directory"
  if [ "$USE_SYSTEMD" -eq 1 ]; then
    has_systemd || die "--systemd: systemd is not running on this machine; use the default cron schedule"
    local unit
    for unit in "${SYSTEMD_UNITS[@]}"; do
      install_file "$APP_DIR/setup/systemd/$unit" "$SYSTEMD_DIR/$unit" 0644
    done
    rm -f "$CRON_FILE"
    systemctl daemon-reload
    for unit in "${SYSTEMD_UNITS[@]}"; do
      case "$unit" in *.timer) systemctl enable --now "$unit" >>"$INSTALL_LOG" 2>&1 ;; esac
    done
    ok "systemd timers: $APP_NAME.timer (hourly), $APP_NAME-backup.timer (03:17), $APP_NAME-verify.timer (Sun 04:37)"
  else
    install_file "$APP_DIR/crontab.txt" "$CRON_FILE" 0644
    if has_systemd; then disable_timers; fi
    if has_systemd; then systemctl enable --now cron >>"$INSTALL_LOG" 2>&1 || true
    else service cron start >>"$INSTALL_LOG" 2>&1 || warn "cron is not running (no init system?)"; fi
    ok "cron: $CRON_FILE (hourly at :07, log $LOG; backup 03:17, verify Sundays 04:37, log $BACKUP_LOG)"
  fi
}

disable_timers() {
  local unit
  for unit in "${SYSTEMD_UNITS[@]}"; do
    case "$unit" in *.timer) systemctl disable --now "$unit" >/dev/null 2>&1 || true ;; esac
  done
}

# BACKUP_DIR must already exist: creating it when the drive is not mounted would put the backups on the
# SD card they are meant to outlive (the loader refuses a BACKUP_DIR on the root filesystem anyway).
configure_backups() {
  [ -n "$BACKUP_DIR_OPT" ] || return 0
  case "$BACKUP_DIR_OPT" in /*) ;; *) die "--backup-dir needs an absolute path, not $BACKUP_DIR_OPT" ;; esac
  [ -d "$BACKUP_DIR_OPT" ] || die "--backup-dir $BACKUP_DIR_OPT does not exist: mount the drive and create it first"
  if [ "$(stat -c %d "$BACKUP_DIR_OPT")" = "$(stat -c %d /)" ]; then
    warn "$BACKUP_DIR_OPT is on the root filesystem (the SD card): backup will refuse it unless .env sets BACKUP_REQUIRE_MOUNT=no"
  fi
  if [ "$(stat -f -c %T "$BACKUP_DIR_OPT")" = "tmpfs" ]; then
    warn "$BACKUP_DIR_OPT is on tmpfs (memory; a reboot deletes it): backup will refuse it unless .env sets BACKUP_REQUIRE_MOUNT=no"
  fi
  if ! runuser -u "$SERVICE_USER" -- test -w "$BACKUP_DIR_OPT"; then
    chown "$SERVICE_USER:" "$BACKUP_DIR_OPT" 2>/dev/null \
      || warn "$SERVICE_USER cannot write to $BACKUP_DIR_OPT and chown failed (FAT drive? mount it with uid=$SERVICE_USER)"
  fi
  IA_SET_BACKUP_DIR=$BACKUP_DIR_OPT "$SYSTEM_PYTHON" "$APP_DIR/setup/envfile.py" set "$ENV_FILE" BACKUP_DIR
  ok "BACKUP_DIR=$BACKUP_DIR_OPT in $ENV_FILE (nightly backup, weekly verify)"
  if [ "$REPORTS" -eq 1 ] && [ -z "$(env_get REPORT_DIR)" ]; then  # the nights' reports beside the dumps
    mkdir -p "$BACKUP_DIR_OPT/reports" && chown "$SERVICE_USER:" "$BACKUP_DIR_OPT/reports"
    IA_SET_REPORT_DIR=$BACKUP_DIR_OPT/reports "$SYSTEM_PYTHON" "$APP_DIR/setup/envfile.py" set "$ENV_FILE" REPORT_DIR
    ok "REPORT_DIR=$BACKUP_DIR_OPT/reports in $ENV_FILE (each finished night's report, kept as long as the dumps)"
  fi
}

restore_backup() {
  [ -n "$RESTORE_FILE" ] || return 0
  [ -r "$RESTORE_FILE" ] || die "--restore $RESTORE_FILE: no such readable file"
  say "restoring $RESTORE_FILE into $DB_NAME"
  loader restore "$(realpath "$RESTORE_FILE")" 2>&1 | tee -a "$INSTALL_LOG" >&2 \
    || die "restore failed (see above); the archive database was left as it was"
}

# The reference article's script ran from a user crontab as health_metrics_loader.py.
find_reference_cron() {
  local user listing
  # fd 3: crontab below reads standard input
  while IFS=: read -r user _ <&3; do
    listing=$(crontab -l -u "$user" 2>/dev/null) || continue
    if printf '%s\n' "$listing" | grep -v '^#' | grep -q 'health_metrics_loader'; then
      if [ "$ADOPT_REFERENCE" -eq 1 ]; then
        printf '%s\n' "$listing" | sed '/^[^#].*health_metrics_loader/s/^/# disabled by influx-archive: /' \
          | crontab -u "$user" -
        ok "disabled the reference script's cron line of user $user"
      else
        warn "user $user's crontab still runs the reference script (health_metrics_loader); re-run with --adopt-reference to disable it"
      fi
    fi
  done 3</etc/passwd
}

adopt_reference_table() {
  [ "$ADOPT_REFERENCE" -eq 1 ] || return 0
  loader adopt-reference --yes \
    2>&1 | tee -a "$INSTALL_LOG" >&2
}

# the loader as the installed command runs it: its messages name `influx-archive` and the installed .env
loader() {
  (cd "$APP_DIR" && runuser -u "$SERVICE_USER" -- env INFLUX_ARCHIVE_COMMAND="$APP_NAME" INFLUX_ARCHIVE_ENV_FILE="$ENV_FILE" \
    "$VENV/bin/python" -m loader --env-file "$ENV_FILE" "$@")
}

first_run() {
  if [ -z "$(env_get INFLUX_URL)" ] || { [ "$(env_get INFLUX_QUERY_LANGUAGE)" != influxql ] && [ -z "$(env_get INFLUX_TOKEN)$(env_get INFLUX_TOKEN_FILE)" ]; }; then
    warn "InfluxDB settings are not complete in $ENV_FILE: fill them in, then run: $APP_NAME check"
    return 0
  fi
  say "first load (this can take a while on a Pi: up to INITIAL_LOOKBACK of data)"
  local code
  set +e
  LOG_FILE=$LOG loader run >&2  # shown here, and kept in $LOG with its times (LOG_FILE)
  code=$?
  set -e
  if [ "$code" -eq 2 ]; then
    warn "the first load needs you: the line above says what to do; every hourly run stops the same way until then (after the fix: $APP_NAME run)"
  elif [ "$code" -ne 0 ]; then
    warn "the first load failed (exit $code); the hourly job will retry (see $LOG)"
  fi
}

first_backup() {
  [ -n "$(env_get BACKUP_DIR)" ] || return 0
  say "first backup to $(env_get BACKUP_DIR)"
  LOG_FILE=$BACKUP_LOG loader backup >&2 || warn "the backup failed (see above and $BACKUP_LOG); the nightly job will retry"
}

summary() {
  local host
  host=$(hostname -I 2>/dev/null | awk '{print $1}')
  cat >&2 <<EOF

influx-archive is installed.
  command            $APP_NAME status | check | backfill | backup | --help  (as $SERVICE_USER, from any directory)
  code and settings  $APP_DIR  (.env, mode 0600, owner $SERVICE_USER)
  schedule           $([ "$USE_SYSTEMD" -eq 1 ] && echo "systemd timer $APP_NAME.timer" || echo "$CRON_FILE") (hourly)
  log                $LOG  (install log: $INSTALL_LOG)
  backups            $(b=$(env_get BACKUP_DIR); [ -n "$b" ] && echo "$b, nightly at 03:17, verified Sundays; log $BACKUP_LOG" || echo "off: re-run with --backup-dir DIR on a mounted drive (README, Backups)")
  Grafana            PostgreSQL data source: host ${host:-<this machine>}:$(pg_port), database $DB_NAME,
                     user $GRAFANA_ROLE, password GRAFANA_PG_PASSWORD in $ENV_FILE, TLS verified by this Pi's CA;
                     its provisioning file, this port filled in: $APP_DIR/grafana-datasource.yaml;
                     the dashboard for these settings (PG_TABLE, TAGS, SUBJECT): $APP_DIR/grafana-dashboard.json
                     $([ -n "$LAN_CIDR" ] && echo "reachable from $LAN_CIDR" || echo "local only; re-run with --lan CIDR to reach it from Grafana")
EOF
  echo "status:" >&2
  loader status >&2 || true
}

uninstall() {
  say "removing the schedule and the venv"
  rm -f "$CRON_FILE" "$LOGROTATE_FILE" "$COMMAND_FILE"
  if has_systemd; then
    disable_timers
    local unit
    for unit in "${SYSTEMD_UNITS[@]}"; do rm -f "${SYSTEMD_DIR:?}/$unit"; done
    systemctl daemon-reload
  fi
  rm -rf "$VENV"
  if [ "$PURGE" -eq 1 ]; then
    find_postgres
    say "dropping database $DB_NAME and roles $LOADER_ROLE, $GRAFANA_ROLE (--purge)"
    runuser -u postgres -- psql -p "$(pg_port)" -X -q -d postgres -v ON_ERROR_STOP=1 >>"$INSTALL_LOG" 2>&1 <<EOF
DROP DATABASE IF EXISTS $DB_NAME;
DROP ROLE IF EXISTS $GRAFANA_ROLE;
DROP ROLE IF EXISTS $LOADER_ROLE;
EOF
    rm -f "$(pg_conf_dir)/conf.d/influx-archive.conf" "$(pg_conf_dir)/conf.d/influx-archive-lan.conf" \
          "$(pg_conf_dir)/conf.d/influx-archive-tls.conf"
    rm -rf "$(pg_conf_dir)/${TLS_DIR_NAME:?}"  # the Pi's CA and certificate
    local hba
    hba=$(pg_conf_dir)/pg_hba.conf
    if grep -qs "# influx-archive: Grafana reads from the LAN" "$hba"; then  # our LAN lines, and only ours
      grep -v -e "^# influx-archive: Grafana reads from the LAN" -e "^hostssl    $DB_NAME    $GRAFANA_ROLE    " \
        -e "^host    $DB_NAME    $GRAFANA_ROLE    " "$hba" > "$hba.new" || true
      chmod --reference="$hba" "$hba.new" && chown --reference="$hba" "$hba.new" && mv "$hba.new" "$hba"
    fi
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" reload >>"$INSTALL_LOG" 2>&1 || true
    stop_demo_source
    local backups=""
    if [ -f "$ENV_FILE" ]; then backups=$(env_get BACKUP_DIR); fi
    if id -u "$APP_NAME" >/dev/null 2>&1 && [ "$(getent passwd "$APP_NAME" | cut -d: -f7)" = /usr/sbin/nologin ]; then
      userdel "$APP_NAME" >/dev/null 2>&1 || true  # the system user install.sh made (a login user stays)
    fi
    rm -rf "${APP_DIR:?}" "${LOG_DIR:?}"  # code, .env with its secrets, logs
    printf '    ok: %s\n' "removed the database, its roles, $APP_DIR (.env included) and $LOG_DIR" >&2
    printf '    kept: %s\n' "PostgreSQL $PG_VERSION/$PG_CLUSTER (port $(pg_port); other databases may use it: \
\`pg_dropcluster --stop $PG_VERSION $PG_CLUSTER\` removes it), cron, the apt packages" \
      "${backups:-no BACKUP_DIR was set}$([ -n "$backups" ] && echo ': its dumps, the only copy of the archive now')" >&2
  else
    ok "the archive database $DB_NAME and .env are kept (add --purge to remove the data)"
  fi
}

# The demo's InfluxDB has no auth: --purge stops it with the archive it fed (marked when --demo set it up).
stop_demo_source() {
  grep -qsxF "$DEMO_MARK" /etc/default/influxdb || return 0
  # its unit, or the init script (which stops the pid in its pid file only); else the one install_demo_source
  # started directly with that pid file. Never by name: the person may run an influxd of their own.
  if has_systemd; then systemctl disable --now influxdb >>"$INSTALL_LOG" 2>&1 || true
  else service influxdb stop >>"$INSTALL_LOG" 2>&1 || true; fi
  stop_pidfile "$DEMO_PIDFILE"
  local rest
  rest=$(grep -vxF -e "$DEMO_MARK" -e 'INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086' /etc/default/influxdb || true)
  printf '%s\n' "$rest" > /etc/default/influxdb
  ok "stopped the demo's InfluxDB (its readings stay in /var/lib/influxdb: \`apt purge influxdb\` removes them)"
}

# The demo's server is no longer ours (the person's readings are in it): --purge leaves it running.
forget_demo_source() {
  local rest
  rest=$(grep -vxF "$DEMO_MARK" /etc/default/influxdb || true)
  printf '%s\n' "$rest" > /etc/default/influxdb
}

# Whether URL names the demo's server (127.0.0.1 or localhost, port 8086).
is_demo_server() { [[ "$1" =~ ^https?://(127\.0\.0\.1|localhost|\[::1\]):8086/?$ ]]; }

# Stop the influxd whose pid the file holds (only if that pid is an influxd), and wait until it is gone.
stop_pidfile() {
  local pid _
  pid=$(cat "$1" 2>/dev/null) || return 0
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = influxd ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do  # gone, or a zombie its parent has not reaped yet
      grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$pid/status" || break
      sleep 1
    done
  fi
  rm -f "$1"
}

# --demo on a Pi that loads the person's InfluxDB would start an InfluxDB without auth and seed readings
# nothing loads: refused before anything changes.
refuse_demo_on_real_install() {
  [ "$DEMO" -eq 1 ] && [ -f "$ENV_FILE" ] || return 0
  local url
  url=$(env_get INFLUX_URL)
  [ "$url" != "$DEMO_URL" ] || return 0
  die "--demo: this machine already archives ${url:-an InfluxDB not yet set} ($ENV_FILE); the demo's InfluxDB (no auth) and its synthetic readings would never be loaded: run install.sh without --demo (it upgrades and keeps the settings)"
}

main() {
  parse_args "$@"
  check_root "$@"
  trap on_exit EXIT
  refuse_demo_on_real_install
  # paths the user gave are taken from here; then work from /, so that `runuser -u postgres` is not
  # left in a directory it may not enter (could not change directory to "/root/...": Permission denied)
  [ -z "$INFLUX_TOKEN_FILE_OPT" ] || INFLUX_TOKEN_FILE_OPT=$(realpath -m -- "$INFLUX_TOKEN_FILE_OPT")
  [ -z "$RESTORE_FILE" ] || RESTORE_FILE=$(realpath -m -- "$RESTORE_FILE")
  cd /
  if [ "$UNINSTALL" -eq 1 ]; then uninstall; return; fi
  say "checking the system";            detect_system
  say "installing packages";            install_packages
  choose_service_user
  say "configuring PostgreSQL";         find_postgres; configure_postgres
  say "creating roles and database";    create_roles
  say "installing the code";            install_code
  grafana_datasource
  say "creating the Python venv";       create_venv
  say "writing settings";               write_env; configure_backups; grafana_dashboard
  install_demo_source
  restore_backup
  say "looking for the reference setup"; find_reference_cron; adopt_reference_table
  say "installing the schedule";        install_schedule
  first_run
  first_backup
  summary
}

# Run only when executed, not when sourced (tests source it to call single steps).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
