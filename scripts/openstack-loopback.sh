#!/usr/bin/env bash
# Installs upstream OpenStack Keystone 30.0.0 and Glance 33.0.0 from PyPI into .openstack/venv and
# runs them on loopback under gunicorn: sqlite databases, Fernet tokens, file image stores. No root,
# no message queue. After https://docs.openstack.org/keystone/latest/install/ and
# https://docs.openstack.org/glance/latest/install/, with two traps handled:
#  - both apps parse sys.argv with oslo.config, so gunicorn's own arguments would make them exit;
#    a small wsgi module trims sys.argv before importing each app;
#  - web-download refuses loopback URLs unless [import_filtering_opts] allowed_hosts lists them.
#
#   scripts/openstack-loopback.sh start [PORT]   start (Keystone on PORT, default 18500; Glance on
#                                                 PORT+1); prints Keystone's v3 URL
#   scripts/openstack-loopback.sh stop           stop both, remove their data
#
# Accounts (domain Default), made by Keystone's bootstrap and this script:
#   admin / admin-secret     role admin in project admin (the cloud's operator)
#   alice / alice-secret     role member in project alpha
#   bob / bob-secret         role member in project beta
#   glance / glance-secret   the image service's own user (admin in project service)
# The catalog has the identity and image services in region RegionOne.
#
# Logs: .openstack/logs/*.log. Data: .openstack/data (removed by stop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base="$root/.openstack"
cmd=${1:-start}
kport=${2:-18500}
gport=$((kport + 1))

stop() {
    if [ -f "$base/pids" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$base/pids"
        rm -f "$base/pids"
    fi
    rm -rf "$base/data"
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
stop

venv="$base/venv"
if [ ! -x "$venv/bin/glance-manage" ] || [ ! -x "$venv/bin/keystone-manage" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        keystone==30.0.0 glance==33.0.0 gunicorn >&2
fi
bin="$venv/bin"
data="$base/data"
etc="$data/etc"
mkdir -p "$etc/keystone" "$etc/glance" "$data/images" "$data/staging" "$data/tasks" "$data/locks" "$base/logs"
keystone="http://127.0.0.1:$kport/v3"
glance="http://127.0.0.1:$gport"

cat > "$etc/keystone/keystone.conf" <<CONF
[DEFAULT]
log_file = $base/logs/keystone.log
[database]
# sqlite serialises writers: wait up to 30 s for a lock (the default is 5 s). It still refuses one
# of two transactions that would deadlock ("database is locked", a 500), so the tests against
# these services take turns (tests/it/real_openstack.rs, TURN).
connection = sqlite:///$data/keystone.db?timeout=30
[token]
provider = fernet
[fernet_tokens]
key_repository = $data/fernet-keys
[fernet_receipts]
key_repository = $data/fernet-keys
[credential]
key_repository = $data/credential-keys
CONF

cat > "$etc/glance/glance-api.conf" <<CONF
[DEFAULT]
log_file = $base/logs/glance.log
enabled_backends = local:file
enabled_import_methods = [glance-direct,web-download,copy-image]
worker_self_reference_url = $glance
[database]
connection = sqlite:///$data/glance.db?timeout=30
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = $data/images
[os_glance_staging_store]
filesystem_store_datadir = $data/staging
[os_glance_tasks_store]
filesystem_store_datadir = $data/tasks
[keystone_authtoken]
www_authenticate_uri = $keystone
auth_url = $keystone
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = glance-secret
# Validate every token with Keystone (no 5-minute cache), so a revoked token is refused at once,
# as the token-refresh test needs.
token_cache_time = -1
[paste_deploy]
flavor = keystone
config_file = $venv/etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $data/locks
[import_filtering_opts]
allowed_hosts = 127.0.0.1,localhost
allowed_ports = []
CONF

# The wsgi modules: oslo.config must not see gunicorn's arguments.
cat > "$etc/keystone_wsgi.py" <<PY
import os, sys
sys.argv = sys.argv[:1]
os.environ["OS_KEYSTONE_CONFIG_FILES"] = "$etc/keystone/keystone.conf"
from keystone.wsgi.api import application  # noqa: E402,F401
PY
cat > "$etc/glance_wsgi.py" <<PY
import os, sys
sys.argv = sys.argv[:1]
os.environ["OS_GLANCE_CONFIG_DIR"] = "$etc/glance"
from glance.wsgi.api import application  # noqa: E402,F401
PY

me=$(id -un); group=$(id -gn)
km() { "$bin/keystone-manage" --config-file "$etc/keystone/keystone.conf" "$@" >> "$base/logs/setup.log" 2>&1; }
km db_sync
km fernet_setup --keystone-user "$me" --keystone-group "$group"
km credential_setup --keystone-user "$me" --keystone-group "$group"
km bootstrap --bootstrap-password admin-secret --bootstrap-username admin \
    --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$keystone" --bootstrap-public-url "$keystone" \
    --bootstrap-internal-url "$keystone"
"$bin/glance-manage" --config-file "$etc/glance/glance-api.conf" db_sync >> "$base/logs/setup.log" 2>&1

serve() { # name port module
    (cd "$etc" && exec "$bin/gunicorn" --workers 1 --threads 8 --timeout 300 \
        --bind "127.0.0.1:$2" --pythonpath "$etc" "$3:application" \
        >> "$base/logs/$1-gunicorn.log" 2>&1) &
    echo $! >> "$base/pids"
}
serve keystone "$kport" keystone_wsgi

ready() { # url (python3, not curl: a fresh machine may not have curl)
    "$bin/python" - "$1" <<'PY' || { echo "not ready: $1 (see $base/logs)" >&2; return 1; }
import sys, time, urllib.request, urllib.error
for _ in range(240):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answers
    except Exception:
        time.sleep(0.25)
sys.exit(1)
PY
}
ready "$keystone"

# As the admin: projects, users, roles, and the image service in the catalog.
if ! "$bin/python" - "$keystone" "$glance" >> "$base/logs/setup.log" 2>&1 <<'PY'
import json, sys, urllib.error, urllib.request
keystone, glance = sys.argv[1], sys.argv[2]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(keystone + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return r.headers, (json.loads(text) if text else None)
headers, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
token = headers["X-Subject-Token"]
api = lambda method, path, body=None: call(method, path, body, token)[1]
try:  # bootstrap makes admin, member and reader in recent releases
    api("POST", "/roles", {"role": {"name": "member"}})
except urllib.error.HTTPError as e:
    if e.code != 409:
        raise
role = lambda name: api("GET", "/roles?name=" + name)["roles"][0]["id"]
for user, password, project, grant in [("glance", "glance-secret", "service", "admin"),
                                        ("alice", "alice-secret", "alpha", "member"),
                                        ("bob", "bob-secret", "beta", "member")]:
    p = api("POST", "/projects", {"project": {"name": project, "domain_id": "default"}})["project"]
    u = api("POST", "/users", {"user": {"name": user, "password": password,
                                        "domain_id": "default"}})["user"]
    api("PUT", f"/projects/{p['id']}/users/{u['id']}/roles/{role(grant)}")
service = api("POST", "/services", {"service": {"name": "glance", "type": "image"}})["service"]
for interface in ["public", "internal", "admin"]:
    api("POST", "/endpoints", {"endpoint": {"service_id": service["id"], "interface": interface,
                                            "region_id": "RegionOne", "url": glance}})
print("keystone: users, projects and the image endpoint are set up")
PY
then
    echo "cannot set up Keystone's users and catalog (see $base/logs/setup.log)" >&2
    exit 1
fi

serve glance "$gport" glance_wsgi
ready "$glance/versions"
echo "$keystone"
