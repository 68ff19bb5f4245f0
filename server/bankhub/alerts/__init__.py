"""Transactional alerts. See ``docs/alerts.md``.

Pure code (no I/O), unit-tested on its own:

* :mod:`.signing` — the HMAC-SHA256 request signature calling systems use;
* :mod:`.templates` — typed, localised alert templates and the card-number guard;
* :mod:`.rules` — categories, customer preferences, quiet hours: what happens to an alert;
* :mod:`.retry` — the fallback channel's retry schedule;
* :mod:`.content` — how alert texts are sealed at rest.

With I/O, elsewhere: the fallback worker and its webhook adapter
(:mod:`bankhub.delivery.fallback`) and one node's alert runtime and its background loops
(:mod:`bankhub.delivery.alerting`). SQL lives in
:mod:`bankhub.storage.alerts` and :mod:`bankhub.storage.alert_systems`, state changes in
:mod:`bankhub.actions.alerts`, delivery to sockets in :mod:`bankhub.delivery.alerts`.
"""
