# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How many evacuations are in flight at once: a window that grows while Nova keeps pace and shrinks when it
does not. Pure: the engine hands over what each poll saw; no clock, no requests.

The one decision is ``AdaptiveWindow.observe``. Evidence, per poll:

- how long the poll's listings took (the API's answer time), against the fastest seen (the baseline);
- how long each evacuation in flight has waited in ``accepted`` (the conductor and the scheduler have not
  handed it to a compute yet: Nova's queue, not the rebuild, which runs while the migration is
  ``pre-migrating``);
- transient API errors and "No valid host" answers since the last poll.

Nova keeping pace (every evacuation left the queue quickly, answers near the baseline) with the window full
grows it: doubling up to the last width that was too much, then one at a time. A slow API, a long queue, an
error or a NoValidHost halves it, at most once per two polls so that one bad moment is not counted twice. The
width never exceeds ``cap`` (``max_parallel``) nor falls below ``floor``.
"""

from __future__ import annotations

QUEUE_FAST = 3.0  # seconds in accepted below which Nova keeps pace
QUEUE_SLOW = 15.0  # seconds in accepted above which Nova is behind
LATENCY_SLACK = 1.0  # seconds over the baseline an answer may take before it counts as slow
LATENCY_FACTOR = 3.0  # ... and times the baseline
COOLDOWN_POLLS = 2  # polls after a cut during which no other cut is made
DEFAULT_START = 10  # the first width: what a fixed window of the old default kept in flight at half
FIXED_CAP = 20  # max_parallel unset, concurrency=fixed: the window of earlier releases
ADAPTIVE_CAP = 100  # max_parallel unset, concurrency=adaptive: the window grows up to here while Nova keeps pace

# Servers whose evacuation begins together (each its lock, then its evacuate request, in one thread), and whose next
# step after a poll (the unlock of a recovered server) is taken together: one after the other, the requests of a
# window of 50 took 17 s on a loaded 2-core control plane (0.35 s a server), longer than many rebuilds. Few enough
# that an API starting to fail sees at most this many requests before the run pauses.
SENDERS = 4

GROW = 'grow'
HOLD = 'hold'
SHRINK = 'shrink'


class AdaptiveWindow(object):
    """The width of the evacuation window. ``cap``: never more (``max_parallel``); ``start``: the first width."""

    def __init__(self, cap, start=DEFAULT_START, floor=1):
        self.cap = max(1, int(cap))
        self.floor = max(1, min(int(floor), self.cap))
        self.width = max(self.floor, min(int(start), self.cap))
        self.threshold = self.cap  # doubling up to here, then one at a time
        self.baseline = None  # the fastest poll seen, seconds
        self.cooldown = 0
        self.peak = self.width
        self.changes = []  # (poll number, old width, new width, reason)
        self.polls = 0

    def slow(self, latency):
        if latency is None or self.baseline is None:
            return False
        return latency > max(self.baseline * LATENCY_FACTOR, self.baseline + LATENCY_SLACK)

    def observe(self, in_flight, latency=None, queued=(), errors=0, no_valid_host=0):
        """One poll's evidence; returns (action, reason) and sets ``width``.

        ``in_flight``: evacuations in flight when the poll was made; ``latency``: seconds the poll's listings took
        (None when the poll failed); ``queued``: seconds each evacuation in flight has spent with its migration
        ``accepted`` (or not yet listed); ``errors``: transient API errors since the last poll; ``no_valid_host``: evacuations that
        ended with No valid host since the last poll.
        """
        self.polls += 1
        queued = list(queued or [])
        longest = max(queued) if queued else 0.0
        was_slow = self.slow(latency)
        if latency is not None and not was_slow:
            self.baseline = latency if self.baseline is None else min(self.baseline, latency)
        if self.cooldown:
            self.cooldown -= 1

        trouble = None
        if no_valid_host:
            trouble = '%d evacuation(s) found no valid host' % no_valid_host
        elif errors:
            trouble = '%d transient API error(s)' % errors
        elif was_slow:
            trouble = 'the API answered in %.1fs (baseline %.1fs)' % (latency or 0.0, self.baseline or 0.0)
        elif longest > QUEUE_SLOW:
            trouble = 'an evacuation waited %.0fs in Nova\'s queue (migration accepted)' % longest
        if trouble:
            if self.cooldown or self.width <= self.floor:
                return HOLD, trouble
            return self._set(max(self.floor, self.width // 2), SHRINK, trouble, cut=True)

        keeping_pace = longest <= QUEUE_FAST
        if not keeping_pace:
            return HOLD, 'an evacuation has waited %.0fs in Nova\'s queue' % longest
        if in_flight < self.width:
            return HOLD, 'the window is not full (%d of %d in flight)' % (in_flight, self.width)
        if self.width >= self.cap:
            return HOLD, 'at max_parallel (%d)' % self.cap
        wider = self.width * 2 if self.width < self.threshold else self.width + 1
        return self._set(min(self.cap, wider, max(self.threshold, self.width + 1)), GROW, 'Nova keeps pace')

    def _set(self, width, action, reason, cut=False):
        old = self.width
        self.width = width
        if cut:
            self.threshold = max(self.floor, width)
            self.cooldown = COOLDOWN_POLLS
        self.peak = max(self.peak, width)
        if width != old:
            self.changes.append((self.polls, old, width, reason))
        return action, reason

    def to_dict(self):
        """What the report and the live progress show of the window."""
        return dict(
            width=self.width,
            cap=self.cap,
            peak=self.peak,
            changes=len(self.changes),
            last_change=dict(zip(('poll', 'from', 'to', 'why'), self.changes[-1])) if self.changes else None,
        )


class FixedWindow(object):
    """``max_parallel`` evacuations at once, whatever Nova does (the window before it adapted)."""

    def __init__(self, cap):
        self.cap = self.width = self.peak = max(1, int(cap))
        self.changes = []

    def observe(self, in_flight, latency=None, queued=(), errors=0, no_valid_host=0):
        return HOLD, 'fixed at %d' % self.width

    def to_dict(self):
        return dict(width=self.width, cap=self.cap, peak=self.peak, changes=0, last_change=None)


def window_for(concurrency, max_parallel=None, sharing=1):
    """The window of a run: ``concurrency`` is ``adaptive`` or ``fixed``; ``max_parallel`` its cap, or None for the
    default of that kind (``ADAPTIVE_CAP`` or ``FIXED_CAP``). ``sharing``: how many hosts are recovered together,
    their evacuations sharing that cap: each host's window gets an equal part of it (at least one)."""
    if concurrency not in ('adaptive', 'fixed'):
        raise ValueError('concurrency must be adaptive or fixed, not %r' % (concurrency,))
    total = max_parallel or (FIXED_CAP if concurrency == 'fixed' else ADAPTIVE_CAP)
    cap = max(1, total // max(1, int(sharing or 1)))
    return FixedWindow(cap) if concurrency == 'fixed' else AdaptiveWindow(cap)
