"""Nova's own fake virt driver, with a stable node identity and an injectable spawn delay.

Registered by compute_launcher as ``nova.virt.novaha_fake`` (Nova loads drivers only from
``nova.virt``). Evacuation rebuilds through ``spawn`` (the fake driver has no ``rebuild``),
so the delay applies to boots and to evacuations alike: the benchmark uses it to give a
rebuild a realistic cost. A server with the metadata ``novaha_fake:rebuild_delay=SECONDS`` takes that
long to be rebuilt instead, whatever the cloud's delay: tests that must see an evacuation in flight use it.
"""

import time

from oslo_config import cfg

from nova.compute import task_states
from nova.virt import fake

REBUILD_DELAY_KEY = "novaha_fake:rebuild_delay"

CONF = cfg.CONF
CONF.register_opts([
    cfg.FloatOpt("spawn_delay", default=0.0, min=0.0,
                 help="Seconds every spawn (boot or evacuation rebuild) takes."),
], group="novaha_fake")


class NovahaFakeDriver(fake.FakeDriverWithoutFakeNodes):
    """A single-node fake hypervisor named after the host, whose node UUID survives restarts."""

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        delay = CONF.novaha_fake.spawn_delay
        if instance.task_state == task_states.REBUILD_SPAWNING:
            try:
                delay = float((instance.metadata or {}).get(REBUILD_DELAY_KEY, delay))
            except (TypeError, ValueError):
                pass
        if delay:
            time.sleep(delay)
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info=network_info, block_device_info=block_device_info,
                      power_on=power_on, accel_info=accel_info)
