#!/usr/bin/env bash
# Installs upstream OpenStack Swift from PyPI into .swift/venv and runs a one-replica Swift on loopback
# (after https://docs.openstack.org/swift/latest/development_saio.html). No auth middleware: any X-Auth-Token is accepted and
# accounts are created on first use, so .../v1/AUTH_dfw and .../v1/AUTH_iad act as two regions.
#
#   scripts/swift-saio.sh start [PORT]   start (default proxy port 8080); prints the proxy URL
#   scripts/swift-saio.sh stop           stop the servers
#
# Logs: .swift/logs/*.log. Data: .swift/data (removed by stop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base="$root/.swift"
cmd=${1:-start}
port=${2:-8080}

stop() {
    if [ -f "$base/pids" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$base/pids"
        rm -f "$base/pids"
    fi
    rm -rf "$base/data"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
stop

if [ ! -x "$base/venv/bin/swift-proxy-server" ]; then
    python3 -m venv "$base/venv"
    "$base/venv/bin/pip" install --quiet --disable-pip-version-check swift python-swiftclient
fi
bin="$base/venv/bin"
etc="$base/etc"
mkdir -p "$etc" "$base/data/d1" "$base/logs"
obj=$((port + 10)); cont=$((port + 11)); acct=$((port + 12))

cat > "$etc/swift.conf" <<CONF
[swift-hash]
swift_hash_path_suffix = imgferry
swift_hash_path_prefix = imgferry
[storage-policy:0]
name = gold
default = yes
[swift-constraints]
max_file_size = 5368709122
CONF

server_conf() { # name port
    cat > "$etc/$1.conf" <<CONF
[DEFAULT]
devices = $base/data
mount_check = false
disable_fallocate = true
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
swift_dir = $etc
[pipeline:main]
pipeline = $1
[app:$1]
use = egg:swift#${1%-server}
CONF
    case $1 in
        object-server) printf '[object-replicator]\n[object-auditor]\n[object-updater]\n' >> "$etc/$1.conf" ;;
        container-server) printf '[container-replicator]\n[container-updater]\n[container-auditor]\n[container-sync]\n' >> "$etc/$1.conf" ;;
        account-server) printf '[account-replicator]\n[account-auditor]\n[account-reaper]\n' >> "$etc/$1.conf" ;;
    esac
}
server_conf object-server "$obj"
server_conf container-server "$cont"
server_conf account-server "$acct"
cat > "$etc/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
swift_dir = $etc
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging listing_formats bulk slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
CONF

export SWIFT_CONF_FILE="$etc/swift.conf"
( cd "$etc"
  for ring in account:$acct container:$cont object:$obj; do
      name=${ring%%:*}; p=${ring##*:}
      rm -f "$name.builder" "$name.ring.gz"
      "$bin/swift-ring-builder" "$name.builder" create 10 1 1 >/dev/null
      "$bin/swift-ring-builder" "$name.builder" add "r1z1-127.0.0.1:$p/d1" 1 >/dev/null
      "$bin/swift-ring-builder" "$name.builder" rebalance >/dev/null || true
  done )

for s in account-server container-server object-server proxy-server; do
    "$bin/swift-$s" "$etc/$s.conf" -v > "$base/logs/$s.log" 2>&1 &
    echo $! >> "$base/pids"
done

for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$port/healthcheck" >/dev/null 2>&1; then
        echo "http://127.0.0.1:$port"
        exit 0
    fi
    sleep 0.2
done
echo "swift did not become healthy; logs in $base/logs" >&2
tail -n 20 "$base"/logs/*.log >&2
exit 1
