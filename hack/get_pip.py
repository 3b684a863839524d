"""Stand-in for the get-pip.py script that ansible-test downloads to bootstrap pip.

ansible-test creates empty virtual environments and runs its cached get-pip script
(~/.ansible/test/cache/get_pip_<version>.py) inside them as
``python get_pip.py [pip options] pip==<version> --no-setuptools --no-wheel``.
Its download host is not reachable from here, so hack/sanity.sh places this file in
that cache: pip comes from the interpreter's own ensurepip, then is brought to the
requested version from the configured package index.
"""

import subprocess
import sys

# get-pip.py's own flags; pip install does not know them.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args])


if __name__ == "__main__":
    main()
