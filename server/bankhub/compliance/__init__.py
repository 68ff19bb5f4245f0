"""The compliance rules, pure: data-loss prevention, retention, legal holds, the eDiscovery
export format, information barriers and supervision.

Like ``policy`` and ``protocol``, nothing here does I/O: each rule is a function of the
values it is given (texts, policies, holds, segments), tested by feeding it values. What
stores, schedules and serves them lives in ``storage``, ``actions`` and ``http``.
"""
