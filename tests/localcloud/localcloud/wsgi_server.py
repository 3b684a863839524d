"""Serve an OpenStack WSGI application with gunicorn, with a clean sys.argv.

Keystone, Placement, Nova, Glance and Cinder parse sys.argv with oslo.config when their application
loads, so gunicorn's own command line must not be visible to them; ``--app-arg`` gives the application
arguments of its own (Cinder finds its configuration file only on its command line).
"""

import argparse
import sys

from gunicorn.app.base import BaseApplication


class Server(BaseApplication):
    def __init__(self, app_path, options, app_args=()):
        self.app_path = app_path
        self.options = options
        self.app_args = list(app_args)
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        module, attr = self.app_path.split(":", 1)
        sys.argv = [sys.argv[0], *self.app_args]
        __import__(module)
        return getattr(sys.modules[module], attr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--access-log", required=True)
    parser.add_argument("--app-arg", action="append", default=[], help="an argument for the application")
    args = parser.parse_args()
    options = {
        "bind": args.bind,
        "workers": 1,
        "worker_class": "gthread",
        "threads": args.threads,
        "timeout": 120,
        "graceful_timeout": 5,
        "accesslog": args.access_log,
        "access_log_format": '%(t)s "%(r)s" %(s)s %(L)s',
        "proc_name": args.app,
    }
    sys.argv = [args.app.split(".")[0]]
    Server(args.app, options, args.app_arg).run()


if __name__ == "__main__":
    main()
