# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of novaha.recovery.report_files: the report's files written on the controller, in the
Ansible worker itself (no module process per file)."""

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    files=dict(type='dict', default={}),
    mode=dict(type='raw', default='0640'),
    directory_mode=dict(type='raw', default='0750'),
    remove=dict(type='list', elements='path', default=[]),
)


def octal_mode(value, option):
    """'0640', '640' or 416 -> 416; anything else is a clear error."""
    try:
        mode = int(value, 8) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise AnsibleActionFail('%s must be an octal permission such as 0640, not %r' % (option, value))
    return mode


def file_name(name):
    """A plain file name, never a path that leaves the directory."""
    name = to_text(name)
    if not name or name in ('.', '..') or '/' in name or '\0' in name:
        raise AnsibleActionFail('files: %r is not a plain file name' % name)
    return name


def needs_writing(path, content):
    try:
        with open(path, 'rb') as handle:
            return handle.read() != content
    except (IOError, OSError):
        return True


def write_atomically(path, content, mode):
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, 'wb') as out:
            out.write(content)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_files(directory, files, mode, directory_mode, remove, check_mode):
    """(changed, written, removed) after writing ``files`` ({name: text}) into ``directory`` and removing
    ``remove``; in check mode only what would be done."""
    directory = os.path.abspath(os.path.expanduser(directory))
    wanted = [(os.path.join(directory, file_name(name)), to_bytes(text if text is not None else '')) for name, text in sorted(files.items())]
    made_dir = not os.path.isdir(directory)
    if made_dir and not check_mode:
        os.makedirs(directory, mode=directory_mode)
    written = []
    for path, content in wanted:
        if not needs_writing(path, content):
            if (os.stat(path).st_mode & 0o7777) != mode and not check_mode:
                os.chmod(path, mode)
                written.append(path)
            continue
        if not check_mode:
            write_atomically(path, content, mode)
        written.append(path)
    removed = []
    for path in remove:
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.lexists(path):
            if not check_mode:
                os.unlink(path)
            removed.append(path)
    return made_dir or bool(written) or bool(removed), directory, written, removed


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            changed, directory, written, removed = write_files(
                args['path'],
                args['files'],
                octal_mode(args['mode'], 'mode'),
                octal_mode(args['directory_mode'], 'directory_mode'),
                args['remove'],
                self._play_context.check_mode,
            )
        except (IOError, OSError) as exc:
            raise AnsibleActionFail('writing the report files in %s on the controller failed: %s' % (args['path'], to_text(exc)))
        result.update(changed=changed, path=directory, written=written, removed=removed)
        return result
