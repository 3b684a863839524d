"""cinder-volume's backend: a TEST DRIVER shipped with Cinder, not a storage system.

The backend is ``cinder.tests.fake_driver.FakeLoggingVolumeDriver`` from Cinder's own wheel (Cinder's
functional tests run it): it logs each call and stores no data. A volume exists only as Cinder's
database record; its connection info is a fake iSCSI target that Nova's fake virt driver "attaches"
without a kernel device. Nothing needs root, a block device, a mount or rootwrap. Everything around
the driver is real Cinder: the API, the scheduler, the volume manager, attachments and their hosts.

One addition: a volume created from an image (boot from volume) is cloned from Glance without
copying any data. The test driver has nowhere to write the image, and Cinder's copy path needs
qemu-img and root; Cinder still reads the image's record from Glance (size, properties) and copies
its metadata to the volume (``bootable``, ``volume_image_metadata``), as it does for any backend.
Loaded by cinder-volume as ``localcloud.cinder_test_driver.ImageCloningTestDriver``.
"""

from cinder.tests import fake_driver


class ImageCloningTestDriver(fake_driver.FakeLoggingVolumeDriver):
    """Cinder's FakeLoggingVolumeDriver (a test driver) that 'clones' any image instantly."""

    def clone_image(self, context, volume, image_location, image_meta, image_service):
        return None, True
