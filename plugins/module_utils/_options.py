# PRIVATE module_utils of novaha.recovery: not a public API, may change in any release without notice.
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, novaha.recovery contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The checks of module options that an argument spec cannot say: ranges, patterns and conflicts.

No Ansible imports. Each module declares its rules once (``NovahaModule.option_rules``, a dict of option name to
rule; ``"bmc.timeout"`` names a suboption) and the base class checks them before the module reads or changes
anything. One function per decision:

- whether one value is allowed, and why not ............. a rule: ``at_least``, ``between``, ``matching``
- the first bad option of a module's parameters ......... ``check_options``
- the error an operator reads ............................ ``option_error`` / ``conflict_error``: the option
  itself, its value and the cause, ``kind: configuration``, ``option`` and ``value`` as facts.
"""

from __future__ import annotations

import re

from ansible_collections.novaha.recovery.plugins.module_utils._errors import KIND_CONFIGURATION, NovahaError

NOTHING_CHANGED = 'Nothing was changed'


class Rule(object):
    """One allowed set of values: ``problem(value)`` is None, or what is wrong in words ("must be 1 or more")."""

    def __init__(self, test, words, why=None):
        self.test = test
        self.words = words
        self.why = why

    def problem(self, value):
        if self.test(value):
            return None
        return '%s%s' % (self.words, ' (%s)' % self.why if self.why else '')


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unit(unit):
    return ' %s' % unit if unit else ''


def at_least(minimum, unit='', why=None):
    """A number of ``minimum`` or more (seconds, servers ...)."""
    return Rule(lambda v: _number(v) and v >= minimum, 'must be %s%s or more' % (minimum, _unit(unit)), why)


def between(minimum, maximum, unit='', why=None):
    """A number from ``minimum`` to ``maximum``, both included."""
    return Rule(lambda v: _number(v) and minimum <= v <= maximum, 'must be between %s and %s%s' % (minimum, maximum, _unit(unit)), why)


def matching(pattern, words):
    """Text matching the regular expression ``pattern`` (anchored); ``words`` says what is allowed."""
    compiled = re.compile(pattern)
    return Rule(lambda v: isinstance(v, str) and compiled.match(v) is not None, 'must be %s' % words)


def lookup(params, name):
    """The value of option ``name`` ("bmc.timeout" is the suboption timeout of bmc); None when not given."""
    value = params
    for part in name.split('.'):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def option_error(option, value, problem, shown=None):
    """The error for one bad option: its name, its value (or ``shown``, words for it) and the cause."""
    return NovahaError(
        '%s is %s: it %s. %s' % (option, shown or _show(value), problem, NOTHING_CHANGED),
        kind=KIND_CONFIGURATION,
        option=option,
        value=value if shown is None else None,
    )


def conflict_error(option, other, cause, value=None):
    """The error for two options that cannot be given together (``option`` is the one to change)."""
    return NovahaError(
        '%s conflicts with %s: %s. %s' % (option, other, cause, NOTHING_CHANGED), kind=KIND_CONFIGURATION, option=option, conflicts_with=other, value=value
    )


def _show(value):
    if isinstance(value, str):
        return repr(value)
    return str(value)


def check_options(params, rules):
    """Raise ``option_error`` for the first option (in the order of ``rules``) whose given value breaks its rule.
    Options not given (None) are left to the argument spec's ``required``."""
    for name, rule in rules.items():
        value = lookup(params, name)
        if value is None:
            continue
        problem = rule.problem(value)
        if problem:
            raise option_error(name, value, problem)
