"""Start an unmodified nova-compute with the local cloud's fake driver made loadable.

With ``--standby-file F`` the process imports everything nova-compute needs and then waits
until F exists before it starts the service: a failed host's replacement process is warmed up
while the host is down, so reviving it costs Nova's start-up, not Python's imports.
"""

import os
import sys
import time

from nova.cmd import compute  # applies Nova's own concurrency set-up first

from localcloud import fakevirt

sys.modules["nova.virt.novaha_fake"] = fakevirt


def _warm_up():
    """Import now what nova-compute would import on start."""
    import nova.compute.manager  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    import nova.compute.resource_tracker  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    import nova.scheduler.client.report  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    import os_vif  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel


def main(argv):
    if "--standby-file" in argv:
        index = argv.index("--standby-file")
        go_file = argv[index + 1]
        del argv[index : index + 2]
        _warm_up()
        while not os.path.exists(go_file):
            time.sleep(0.05)
        os.unlink(go_file)
    sys.argv = ["nova-compute"] + argv
    compute.main()


if __name__ == "__main__":
    main(sys.argv[1:])
