# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""novaha.recovery.alertmanager_alerts: an ansible-rulebook event filter.

Alertmanager posts one notification for a group of alerts; a rule must judge each alert on its
own (which host, firing or resolved) and also see how many hosts fire together (the mass guard).
This filter turns one webhook event into one event per alert and annotates each with that count.
"""

import copy
import logging

DOCUMENTATION = r"""
---
short_description: One event per alert of an Alertmanager webhook notification, with the count of firing hosts
description:
  - Splits the notification that Alertmanager posts to a webhook receiver (received by
    C(eda.builtin.webhook) under C(payload)) into one event per alert, so that a rule sees each alert.
  - Each event carries C(alertname), C(status) (firing or resolved), C(host) (the value of the
    O(host_label) label; absent when the alert has no such label), the whole C(alert), and the
    notification's C(receiver), C(group_key), C(group_labels) and C(external_url) under C(notification).
  - Each event also carries C(firing_hosts), the number of distinct hosts that fire an alert of the
    same name in this notification, C(firing_host_names), those hosts in order of appearance, and
    C(firing_rank), the position of this alert among the firing alerts of that name that have a host
    (1 for the first, 0 for an alert that is resolved or has no host). A rulebook compares
    C(firing_hosts) with its limit to refuse a mass alert, and uses C(firing_rank == 1) to say so once.
  - An event that is not an Alertmanager notification (no list under C(payload.alerts)) passes
    unchanged, with a warning.
options:
  host_label:
    description: The alert label that names the compute host, as Nova knows it.
    type: str
    default: host
"""

EXAMPLES = r"""
- name: Alertmanager webhook
  eda.builtin.webhook:
    host: 127.0.0.1
    port: 5000
  filters:
    - novaha.recovery.alertmanager_alerts:
        host_label: host
"""

LOGGER = logging.getLogger(__name__)


def _host_of(alert, host_label):
    value = (alert.get("labels") or {}).get(host_label)
    return value if isinstance(value, str) and value else None


def _status_of(alert, payload):
    return alert.get("status") or payload.get("status") or ""


def _firing_hosts(alerts, host_label, payload):
    """alertname -> the distinct hosts firing it, in order of appearance."""
    firing = {}
    for alert in alerts:
        host = _host_of(alert, host_label)
        if host is None or _status_of(alert, payload) != "firing":
            continue
        hosts = firing.setdefault((alert.get("labels") or {}).get("alertname", ""), [])
        if host not in hosts:
            hosts.append(host)
    return firing


def main(event, host_label="host"):
    """Return the list of per-alert events of one Alertmanager notification."""
    payload = event.get("payload")
    alerts = payload.get("alerts") if isinstance(payload, dict) else None
    if not isinstance(alerts, list):
        LOGGER.warning("novaha.recovery.alertmanager_alerts: not an Alertmanager notification (no list under payload.alerts); event passed unchanged")
        return event
    alerts = [alert for alert in alerts if isinstance(alert, dict)]

    notification = {
        "receiver": payload.get("receiver", ""),
        "group_key": payload.get("groupKey", ""),
        "group_labels": payload.get("groupLabels") or {},
        "external_url": payload.get("externalURL", ""),
        "alerts": len(alerts),
    }
    firing = _firing_hosts(alerts, host_label, payload)
    ranks = {}
    events = []
    for alert in alerts:
        alertname = (alert.get("labels") or {}).get("alertname", "")
        status = _status_of(alert, payload)
        host = _host_of(alert, host_label)
        hosts = firing.get(alertname, [])
        rank = 0
        if host is not None and status == "firing":
            rank = ranks[alertname] = ranks.get(alertname, 0) + 1
        single = {
            "alertname": alertname,
            "status": status,
            "alert": copy.deepcopy(alert),
            "notification": copy.deepcopy(notification),
            "firing_hosts": len(hosts),
            "firing_host_names": list(hosts),
            "firing_rank": rank,
        }
        if host is not None:
            single["host"] = host
        if "meta" in event:
            single["meta"] = copy.deepcopy(event["meta"])
        events.append(single)
    return events
