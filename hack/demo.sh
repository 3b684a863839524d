#!/usr/bin/env bash
# `make demo`: the whole story on the local cloud, as an operator lives it.
#   1. the local cloud is up (started if needed) and reset;
#   2. servers run on node-28: three ACTIVE, one SHUTOFF;
#   3. node-28 fails: its nova-compute dies, its BMC still reads power On (the host hangs);
#   4. playbooks/recover-host.yml recovers it: fences it through Redfish, forces its service down,
#      evacuates every server, verifies each one, writes the report;
#   5. where every server is now, and where the report is.
# Environment: NOVAHA_LOCALCLOUD_DIR / NOVAHA_LOCALCLOUD_PORT_OFFSET select the cloud (default .localcloud/);
# DEMO_HOST (default node-28).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/.venv/dev/bin"
HOST="${DEMO_HOST:-node-28}"
export NOVAHA_LOCALCLOUD_DIR="${NOVAHA_LOCALCLOUD_DIR:-$ROOT/.localcloud}"
STATE="$NOVAHA_LOCALCLOUD_DIR"

if [ ! -x "$DEV/ansible-playbook" ] || [ ! -x "$ROOT/.venv/cloud/bin/python" ]; then
    bash "$ROOT/hack/install.sh"
fi
cloud() { PYTHONPATH="$ROOT/tests/localcloud" "$ROOT/.venv/cloud/bin/python" -m localcloud "$@"; }
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "1. The local cloud (state in $STATE)"
if ! cloud status --quiet >/dev/null 2>&1; then
    make -C "$ROOT" --no-print-directory localcloud-up
fi
cloud reset

say "2. Servers on $HOST: three ACTIVE, one SHUTOFF"
cloud boot --host "$HOST" --count 3 --name web >/dev/null
cloud boot --host "$HOST" --count 1 --status SHUTOFF --name batch >/dev/null

export OS_CLIENT_CONFIG_FILE="$STATE/clouds.yaml"
show_servers() {
    "$DEV/python" - <<'PY'
import openstack
conn = openstack.connect(cloud="novaha-admin")
for s in sorted(conn.compute.servers(all_projects=True), key=lambda s: s.name):
    print(f"   {s.name:10} {s.status:8} on {s.compute_host}")
PY
}
show_servers

say "3. $HOST fails: nova-compute killed, its BMC still reads power On"
cloud fail-host "$HOST" --power on

say "4. ansible-playbook playbooks/recover-host.yml -i $STATE/inventory.yml -e recover_host=$HOST"
link="$ROOT/build/collections/ansible_collections/novaha/recovery"
if [ ! -e "$link" ]; then
    mkdir -p "$(dirname "$link")"
    ln -sfn "$ROOT" "$link"
fi
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"
export PATH="$DEV:$PATH"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
rc=0
"$DEV/ansible-playbook" "$ROOT/playbooks/recover-host.yml" -i "$STATE/inventory.yml" \
    -e "recover_host=$HOST" -e "host_recovery_report_root=$ROOT/reports" 2>&1 | tee "$log" || rc=$?

say "5. Where the servers are now"
show_servers

say "Summary"
summary="$(grep -E "\"msg\": \"$HOST: [A-Z]+ \(run|msg.: .$HOST: [A-Z]+ \(run" "$log" | tail -1 | sed -E 's/^.*"msg": "//; s/"[}]?$//' || true)"
echo "   ${summary:-no summary (see the output above)}"
report="$(find "$ROOT/reports" -maxdepth 1 -name "$HOST-*" -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d" " -f2- || true)"
if [ -n "$report" ]; then
    echo "   Report: $report/report.html (also report.json, report.md, snapshot.json; metrics.prom for Prometheus)"
fi
echo "   After repairing $HOST: ansible-playbook playbooks/restore-host.yml -i $STATE/inventory.yml -e restore_host=$HOST"
exit "$rc"
