# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What happens to a server's disks when it is evacuated: its storage kind, what it loses, and whether its volumes
and ports followed it. Pure functions on server snapshots and Cinder/Neutron bodies; no Ansible, no requests.

One function per decision:

- which storage kind a server has ............................ ``storage_of``
- whether its volumes let it be evacuated (the plan's guard) .. ``volume_guard``
- what the run loses, before anything is evacuated ........... ``loss_warning``
- why a local-ephemeral server is left alone (option skip) .... ``skip_record``
- whether its volumes and ports followed it (verification) .... ``judge_attachments``

The kinds, as Nova rebuilds each one on the new host (nova/compute/manager.py ``_do_rebuild_instance``):

- ``boot_from_volume``: the root disk is a Cinder volume; Nova moves its attachment ("disk on volume, evacuating
  using existing volume"). Nothing is lost, except an ephemeral or swap disk of the flavor on a local store.
- ``shared_instance_store``: the instance directory is on storage every compute sees (NFS, Ceph RBD for
  ephemeral); Nova finds the disk and reuses it ("disk on shared storage, evacuating using existing disk").
- ``local_ephemeral``: the root disk lives on the failed host only; Nova rebuilds it from the image and what was
  written to it is lost, with the ephemeral and swap disks. Attached data volumes are kept.

Nova's API does not say whether an instance directory is shared. From microversion 2.14 Nova finds out itself at
rebuild; below it the request must say so (``onSharedStorage``). Either way the operator declares it (the
module's ``on_shared_storage`` for a whole host, ``shared_storage`` criteria for some servers), and this
module trusts the declaration.
"""

from __future__ import annotations

STORAGE_VOLUME = 'boot_from_volume'
STORAGE_SHARED = 'shared_instance_store'
STORAGE_LOCAL = 'local_ephemeral'
STORAGE_KINDS = (STORAGE_VOLUME, STORAGE_SHARED, STORAGE_LOCAL)

# What the run does with local-ephemeral servers (option ``local_ephemeral``).
LOCAL_EVACUATE = 'evacuate'
LOCAL_SKIP = 'skip'

# Why a server failed verification or was refused for its storage (record ``kind``).
KIND_VOLUME_UNUSABLE = 'volume_unusable'  # a volume in error or maintenance before the run
KIND_VOLUME_NOT_MOVED = 'volume_not_moved'  # an attachment not on the new host, or left on the failed one
KIND_PORT_NOT_BOUND = 'port_not_bound'  # a port not bound to the new host
KIND_STORAGE_UNVERIFIED = 'storage_unverified'  # Cinder or Neutron could not be read to verify
KIND_LOCAL_SKIPPED = 'local_ephemeral_skipped'  # left alone by local_ephemeral=skip

# Cinder volume statuses that stop a server's evacuation in the plan: Nova would try to move the attachment
# and fail, leaving the server in ERROR on the new host (cinder/objects/fields.py VolumeStatus).
UNUSABLE_VOLUME_STATUSES = frozenset(['error', 'error_deleting', 'error_restoring', 'error_extending', 'error_managing', 'maintenance', 'deleting'])


def _ident(snap):
    return '%s (%s)' % (snap.get('name'), snap.get('id'))


def storage_of(snap, shared=False, root=None):
    """The storage of one server (a ``_decisions.snapshot``): its kind, its volumes and what an evacuation loses.

    ``shared``: the operator declared its instance directory on shared storage; ``root``: its root volume when
    known (``root_volume``). A boot-from-volume server is
    ``boot_from_volume`` whatever the declaration; its flavor's ephemeral and swap disks are in the instance
    directory, so they are lost unless that is shared too.
    """
    flavor = snap.get('flavor') or {}
    volumes = list(snap.get('volumes') or [])
    if snap.get('boot_from_volume'):
        kind = STORAGE_VOLUME
    elif shared:
        kind = STORAGE_SHARED
    else:
        kind = STORAGE_LOCAL
    lost = []
    if kind == STORAGE_LOCAL:
        lost.append(dict(disk='root', size_gb=flavor.get('disk'), image_id=snap.get('image_id')))
    if not shared:
        if flavor.get('ephemeral'):
            lost.append(dict(disk='ephemeral', size_gb=flavor.get('ephemeral')))
        if flavor.get('swap'):
            lost.append(dict(disk='swap', size_mb=flavor.get('swap')))
    root = root if kind == STORAGE_VOLUME and root in volumes else None
    data_volumes = [v for v in volumes if v != root]
    return dict(kind=kind, shared=bool(shared), volumes=volumes, root_volume=root, data_volumes=data_volumes, lost=lost, data_loss=bool(lost))


def describe_loss(lost):
    """'root disk (rebuilt from image X), ephemeral disk (1 GB), swap (512 MB)'."""
    words = []
    for item in lost or []:
        if item['disk'] == 'root':
            words.append('root disk (rebuilt from image %s)' % item.get('image_id'))
        elif item['disk'] == 'ephemeral':
            words.append('ephemeral disk (%s GB, recreated empty)' % item.get('size_gb'))
        else:
            words.append('swap (%s MB, recreated empty)' % item.get('size_mb'))
    return ', '.join(words)


def volume_guard(snap, volumes):
    """None when every volume attached to the server can follow it, else why not (a reason naming each volume,
    its status and what to do). ``volumes``: volume id -> the Cinder volume body (None: Cinder does not know it)."""
    problems = []
    for vid in snap.get('volumes') or []:
        body = (volumes or {}).get(vid, {})
        if body is None:
            problems.append('volume %s is attached in Nova but Cinder does not know it' % vid)
            continue
        status = body.get('status')
        if status in UNUSABLE_VOLUME_STATUSES:
            problems.append('volume %s%s is %s' % (vid, ' (%s)' % body['name'] if body.get('name') else '', status))
    if not problems:
        return None
    return (
        'server %s is not evacuated: %s. Nova would fail to move the attachment and leave the server in ERROR '
        'on the new host; repair the volume first ("openstack volume show <id>"; "cinder reset-state" only once '
        'the backend is known good)' % (_ident(snap), '; '.join(problems))
    )


def volume_summary(body):
    """What the report keeps of a Cinder volume body: id, name, status and the host each attachment is on."""
    if body is None:
        return None
    attachments = [
        dict(server_id=a.get('server_id'), attachment_id=a.get('attachment_id'), host=a.get('host_name'), device=a.get('device'))
        for a in body.get('attachments') or []
    ]
    attachments.sort(key=lambda a: (a['server_id'] or '', a['attachment_id'] or ''))
    return dict(id=body.get('id'), name=body.get('name') or None, status=body.get('status'), attachments=attachments)


def root_volume(snap, volumes):
    """The volume a boot-from-volume server boots from: the one attached at its root device name (Nova's
    ``root_device_name``), else the only bootable one. None when it cannot be told."""
    mine = []
    for vid in snap.get('volumes') or []:
        body = (volumes or {}).get(vid) or {}
        devices = [a.get('device') for a in body.get('attachments') or [] if a.get('server_id') == snap.get('id')]
        mine.append((vid, devices, str(body.get('bootable')).lower() == 'true'))
    root = snap.get('root_device')
    at_root = [vid for vid, devices, _b in mine if root and root in devices]
    if len(at_root) == 1:
        return at_root[0]
    bootable = [vid for vid, _d, b in mine if b]
    return bootable[0] if len(bootable) == 1 else None


def storage_brief(storage):
    """What a report entry shows of a server's storage: kind, volumes, what was lost, where volumes and ports are."""
    if not storage:
        return None
    after = storage.get('after') or {}
    return dict(
        kind=storage.get('kind'),
        volumes=list(storage.get('volumes') or []),
        root_volume=storage.get('root_volume'),
        data_volumes=list(storage.get('data_volumes') or []),
        lost=describe_loss(storage.get('lost')) or None,
        volume_hosts=sorted(set(a.get('host') or '?' for v in after.get('volumes') or [] if v for a in v.get('attachments') or []))
        if after.get('volumes')
        else None,
        port_hosts=sorted(set(p.get('host') or '?' for p in after.get('ports') or [])) if after.get('ports') else None,
    )


def port_summary(body):
    return dict(id=body.get('id'), host=body.get('binding:host_id') or None, status=body.get('status'), mac=body.get('mac_address'))


def loss_warning(storages, total):
    """The one warning, before anything is evacuated, naming the servers that lose data and how many they are.

    ``storages``: [(name, id, storage_of(...))] of the servers to evacuate. None when nothing is lost."""
    losing = [(name, sid, st) for name, sid, st in storages if st['data_loss']]
    if not losing:
        return None
    shown = '; '.join('%s (%s): %s' % (name, sid, describe_loss(st['lost'])) for name, sid, st in losing[:20])
    more = ' and %d more' % (len(losing) - 20) if len(losing) > 20 else ''
    return (
        '%d of %d servers to evacuate lose data on local disks: %s%s. Data volumes stay attached and keep their '
        'data. Declare shared instance storage (on_shared_storage / shared_storage) if these disks are on it, '
        'or leave these servers alone with local_ephemeral=skip' % (len(losing), total, shown, more)
    )


def skip_record(view, storage):
    """The ``skipped`` entry of a local-ephemeral server left alone by ``local_ephemeral=skip``."""
    sid = view.get('id')
    return dict(
        id=sid,
        name=view.get('name'),
        project_id=view.get('project_id'),
        status=view.get('status'),
        kind=KIND_LOCAL_SKIPPED,
        storage=storage['kind'],
        reason='left alone (local_ephemeral=skip): its %s would be lost' % describe_loss(storage['lost']),
        next_command='openstack server evacuate %s (accepting that its %s is lost)' % (sid, describe_loss(storage['lost'])),
    )


def judge_attachments(snap, new_host, source_host, volumes, ports):
    """None when every volume and port followed the server to ``new_host``, else (kind, reason).

    ``volumes``: volume id -> Cinder body (a body None: gone); ``ports``: the Neutron ports of the server
    (device_id). Recovered needs: every volume still attached to the server, its attachment on ``new_host`` and
    none left on ``source_host``; every port bound to ``new_host``. ``volumes`` or ``ports`` None: a cloud without
    that service, not checked.
    """
    ident = _ident(snap)
    problems = []
    for vid in (snap.get('volumes') or []) if volumes is not None else []:
        body = (volumes or {}).get(vid)
        if body is None:
            problems.append('volume %s is gone from Cinder' % vid)
            continue
        mine = [a for a in body.get('attachments') or [] if a.get('server_id') == snap.get('id')]
        hosts = sorted(set(a.get('host_name') or '?' for a in mine))
        if not mine:
            problems.append('volume %s is no longer attached to it in Cinder (status %s)' % (vid, body.get('status')))
        elif source_host in hosts:
            problems.append('volume %s still has an attachment on the failed host %s' % (vid, source_host))
        elif hosts != [new_host]:
            problems.append('volume %s is attached on %s, not on %s' % (vid, ', '.join(hosts), new_host))
    if problems:
        return KIND_VOLUME_NOT_MOVED, ('server %s is on %s but %s' % (ident, new_host, '; '.join(problems)))
    unbound = [p for p in ports or [] if (p.get('binding:host_id') or None) != new_host]
    if unbound:
        return KIND_PORT_NOT_BOUND, (
            'server %s is on %s but %s'
            % (ident, new_host, '; '.join('port %s is bound to %s' % (p.get('id'), p.get('binding:host_id') or 'no host') for p in unbound))
        )
    return None


def storage_next_command(record):
    """The next command for a server that failed its storage verification or guard (None for other kinds)."""
    kind = record.get('kind')
    sid = record.get('id')
    if kind in (KIND_VOLUME_UNUSABLE, KIND_VOLUME_NOT_MOVED):
        volumes = (record.get('storage') or {}).get('volumes') or []
        if len(volumes) > 1:
            return 'openstack volume list --long --all-projects | grep %s' % sid
        return 'openstack volume show %s -c status -c attachments' % (volumes[0] if volumes else '<volume>')
    if kind == KIND_PORT_NOT_BOUND:
        return 'openstack port list --server %s --long -c ID -c "Binding Host ID"' % sid
    if kind == KIND_STORAGE_UNVERIFIED:
        return 'openstack server show %s -c volumes_attached; openstack port list --server %s' % (sid, sid)
    return None  # a local-ephemeral server left alone carries its own next_command (skip_record)
