# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark's task timer: where the playbook's wall time goes, task by task."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_timing
type: aggregate
short_description: Write the start and end of every task to a JSON file (benchmark profiling)
description:
  - Used by tests/bench/run.py only. Writes one record per task result to the file named by the
    E(NOVAHA_BENCH_TIMING) environment variable when the play ends.
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timing'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = {}
        self._records = []
        self._path = os.environ.get('NOVAHA_BENCH_TIMING')

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._started[task._uuid] = (time.time(), task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, status):
        started, name = self._started.get(result._task._uuid, (time.time(), result._task.get_name()))
        self._records.append({'task': name, 'action': result._task.action, 'status': status, 'start': started, 'end': time.time()})

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_playbook_on_stats(self, stats):
        if self._path:
            with open(self._path, 'w') as out:
                json.dump(self._records, out)
