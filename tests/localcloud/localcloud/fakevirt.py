"""Nova's own fake virt driver, with a stable node identity, an injectable spawn delay and an
instance store.

Registered by compute_launcher as ``nova.virt.novaha_fake`` (Nova loads drivers only from
``nova.virt``). Evacuation rebuilds through ``spawn`` (the fake driver has no ``rebuild``),
so the delay applies to boots and to evacuations alike: the benchmark uses it to give a
rebuild a realistic cost. A server with the metadata ``novaha_fake:rebuild_delay=SECONDS`` takes that
long to be rebuilt instead, whatever the cloud's delay: tests that must see an evacuation in flight use it.

Disks (instancestore.py): each server's disk is a file in the host's ``instances_path``, which the hosts
of the shared store have in common. Spawn reuses a disk it finds there (an evacuation onto a host that
shares the store: the data is kept, as on NFS or RBD) and writes a new one otherwise (a boot, or an
evacuation from another store: rebuilt from the image, the data is lost). ``instance_on_disk``, which
Nova asks on an evacuation (and checks ``onSharedStorage`` against below microversion 2.14), says
whether this host's store holds the disk. Deleting a server removes its disk. A server with the metadata
``novaha_fake:instance_store=local`` keeps its disk in a private store of its host instead, so that one host
can carry servers of both kinds.
"""

import os
import tempfile
import time

from nova.compute import task_states
from nova.virt import fake
from oslo_config import cfg
from oslo_log import log as logging

from localcloud import instancestore

REBUILD_DELAY_KEY = "novaha_fake:rebuild_delay"

CONF = cfg.CONF
CONF.register_opts(
    [
        cfg.FloatOpt("spawn_delay", default=0.0, min=0.0, help="Seconds every spawn (boot or evacuation rebuild) takes."),
    ],
    group="novaha_fake",
)

LOG = logging.getLogger(__name__)


class NovahaFakeDriver(fake.FakeDriverWithoutFakeNodes):
    """A single-node fake hypervisor named after the host, whose node UUID survives restarts and whose
    servers' disks live in its instance store."""

    def spawn(
        self,
        context,
        instance,
        image_meta,
        injected_files,
        admin_password,
        allocations,
        network_info=None,
        block_device_info=None,
        power_on=True,
        accel_info=None,
    ):
        self._provide_disk(instance)
        delay = CONF.novaha_fake.spawn_delay
        if instance.task_state == task_states.REBUILD_SPAWNING:
            try:
                delay = float((instance.metadata or {}).get(REBUILD_DELAY_KEY, delay))
            except (TypeError, ValueError):
                pass
        if delay:
            time.sleep(delay)
        super().spawn(
            context,
            instance,
            image_meta,
            injected_files,
            admin_password,
            allocations,
            network_info=network_info,
            block_device_info=block_device_info,
            power_on=power_on,
            accel_info=accel_info,
        )

    @staticmethod
    def _store(instance):
        """This host's store for the server: the configured one, or the host's private one (``LOCAL_KEY``)."""
        if (instance.metadata or {}).get(instancestore.LOCAL_KEY) == "local":
            return instancestore.private_store(CONF.instances_path, CONF.host)
        return CONF.instances_path

    def _provide_disk(self, instance):
        """The disk the guest runs on: the one in the store if there is one, else a new one from the image."""
        store = self._store(instance)
        if instancestore.read_disk(store, instance.uuid):
            LOG.info("disk found in the instance store %s: using the existing disk, its data is kept", store, instance=instance)
            return
        instancestore.write_disk(store, instance.uuid, CONF.host)
        if instance.task_state == task_states.REBUILD_SPAWNING:
            LOG.info("no disk in the instance store %s: a new disk from the image, the server's data is lost", store, instance=instance)

    def instance_on_disk(self, instance):
        return instancestore.read_disk(self._store(instance), instance.uuid) is not None

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True, destroy_secrets=True):
        super().destroy(context, instance, network_info, block_device_info=block_device_info, destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)
        if destroy_disks:
            instancestore.remove_disk(self._store(instance), instance.uuid)

    # Nova asks these (as libvirt answers them: a file made in the server's directory on one host, looked
    # for on the other) before it destroys the guest of a server that moved away, to keep a shared disk.
    def check_instance_shared_storage_local(self, context, instance):
        directory = instancestore.disk_path(self._store(instance), instance.uuid).parent
        if not directory.is_dir():
            return None
        handle, name = tempfile.mkstemp(dir=directory, prefix="shared-check-")
        os.close(handle)
        return {"filename": name}

    def check_instance_shared_storage_remote(self, context, data):
        return os.path.exists(data["filename"])

    def check_instance_shared_storage_cleanup(self, context, data):
        try:
            os.unlink(data["filename"])
        except FileNotFoundError:
            pass
