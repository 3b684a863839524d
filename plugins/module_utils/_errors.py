# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's one error type, ``NovahaError``, and the kinds of failure every topic shares.

No Ansible imports. Every failure the engine, the run, the fencing or the service helpers raise is a
``NovahaError`` (or a subclass that only adds a convenient constructor): ``msg`` is phrased for the operator
(the object, the cause, the HTTP status and request id, the next command), ``kind`` is a word that callers
decide on (never the English of ``msg``), ``details`` are the facts a failed task returns beside ``msg``.
``_cloud.NovahaModule`` renders it once, for every module: ``fail_json(msg=msg, kind=kind, **details)``.
"""

from __future__ import annotations

# Kinds shared by every topic: an answer of the API that was an error, a refusal of the role, credentials the
# cloud rejected, an API that did not answer, an object that does not exist, and input that cannot be used (an
# option, a clouds.yaml entry).
KIND_API = 'api_error'
KIND_FORBIDDEN = 'forbidden'
KIND_UNAUTHORIZED = 'unauthorized'
KIND_UNREACHABLE = 'unreachable'
KIND_NOT_FOUND = 'not_found'
KIND_CONFIGURATION = 'configuration'
KIND_MISSING_LIBRARY = 'missing_library'


class NovahaError(Exception):
    """A failure phrased for the operator. ``kind``: a word to decide on; ``details``: facts for the result
    (``None`` values are left out)."""

    def __init__(self, msg, kind=None, **details):
        super(NovahaError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.details = dict((key, value) for key, value in details.items() if value is not None)

    @property
    def request_id(self):
        return self.details.get('request_id')

    @property
    def http_status(self):
        return self.details.get('http_status')

    @property
    def next_command(self):
        return self.details.get('next_command')

    def result(self):
        """What a failed task returns beside ``msg``."""
        out = dict(self.details)
        if self.kind:
            out['kind'] = self.kind
        return out


class EvacuationError(NovahaError):
    """A failure of the evacuation engine: the request id, HTTP status and next command as arguments."""

    def __init__(self, msg, kind=KIND_API, request_id=None, http_status=None, next_command=None, **details):
        super(EvacuationError, self).__init__(msg, kind=kind, request_id=request_id, http_status=http_status, next_command=next_command, **details)


class MissingLibraryError(NovahaError):
    """An optional Python library is needed for what was asked (jmespath for ``query``); the module reports it
    the Ansible way (``missing_required_lib``)."""

    def __init__(self, library, reason, import_traceback):
        super(MissingLibraryError, self).__init__('%s is needed for %s' % (library, reason), kind=KIND_MISSING_LIBRARY)
        self.library = library
        self.reason = reason
        self.import_traceback = import_traceback
