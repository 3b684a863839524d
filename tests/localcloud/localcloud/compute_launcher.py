"""Start an unmodified nova-compute with the local cloud's fake driver made loadable."""

import sys

from nova.cmd import compute  # applies Nova's own concurrency set-up first

from localcloud import fakevirt

sys.modules["nova.virt.novaha_fake"] = fakevirt

if __name__ == "__main__":
    sys.argv[0] = "nova-compute"
    compute.main()
