# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of novaha.recovery.os_host_evacuate: live progress in the job output.

A module cannot write to the job output while it runs. This plugin runs the module in a thread of the
Ansible worker, with ``progress_file`` pointing at a file on the controller that the module rewrites after
every poll, and prints what it reads there with Display (which ansible-playbook writes to stdout and AWX
records as job events). It only works when the module runs on the controller (connection local, the usual
way for cloud API modules); otherwise, and with async, the module runs as usual without live progress.
"""

import json
import os
import tempfile
import threading
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.novaha.recovery.plugins.module_utils._host_evacuation import progress_line

display = Display()

# A line is printed when the counts change (not more often than this), and at least every progress_interval.
MIN_GAP = 2.0


def read_progress(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        wrap_async = self._task.async_val and not self._connection.has_native_async
        local = getattr(self._connection, 'transport', None) in ('local', 'ansible.builtin.local')
        if wrap_async or not local:
            if not wrap_async:
                display.vv('os_host_evacuate: the module runs on %s, not on the controller: no live progress' % self._play_context.remote_addr)
            result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        interval = self._task.args.get('progress_interval') or 10
        try:
            interval = max(1.0, float(interval))
        except (TypeError, ValueError):
            interval = 10.0  # the module's argument validation reports it
        handle, path = tempfile.mkstemp(prefix='novaha-evacuate-', suffix='.json')
        os.close(handle)
        args = dict(self._task.args, progress_file=path)
        outcome = {}

        def work():
            try:
                outcome['result'] = self._execute_module(module_args=args, task_vars=task_vars)
            except BaseException as exc:  # re-raised in the worker's main thread below
                outcome['error'] = exc

        worker = threading.Thread(target=work, name='os_host_evacuate')
        worker.daemon = True
        worker.start()
        shown_at, shown = 0.0, None
        name = task_vars.get('inventory_hostname', '') if task_vars else ''
        try:
            while worker.is_alive():
                worker.join(1.0)
                data = read_progress(path)
                if not data or not worker.is_alive():
                    continue
                now = time.monotonic()
                counts = tuple(data.get(k) for k in ('recovered', 'in_flight', 'failed', 'pending'))
                if (counts != shown and now - shown_at >= MIN_GAP) or now - shown_at >= interval:
                    data['elapsed'] = (data.get('elapsed') or 0) + max(0.0, time.time() - (data.get('time') or 0))
                    display.display(
                        '[%s] %s' % (name, progress_line(data.get('host'), data.get('run_id'), data))
                        if name
                        else progress_line(data.get('host'), data.get('run_id'), data)
                    )
                    shown_at, shown = now, counts
        finally:
            for leftover in (path, path + '.tmp'):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
        if 'error' in outcome:
            raise outcome['error']
        result.update(outcome['result'])
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
