"""Storage for the service desk: queues, agents, sessions, routing, notes, CSAT and figures
(``service_*`` tables, the customer's ``service`` conversation).

One module per table group, one class per module; :class:`ServiceStore` is the desk's
store, the parts composed:

* :mod:`.sessions` — sessions and the customer's service conversation;
* :mod:`.texts` — notes and CSAT, their texts sealed;
* :mod:`.queues` — queue configuration, tags and the waiting lists (read);
* :mod:`.agents` — the agents, their state, capacity and queues;
* :mod:`.routing` — the locked transactions: join, route, leave, transfer, close;
* :mod:`.figures` — the supervisor's figures;
* :mod:`.rows` — the records the actions read, and row decoding.

Routing is decided in Postgres transactions so that it holds with any number of nodes.
Every transaction that touches more than one of them takes its locks in one order —
**queue rows (by code) → agent rows (by id) → session rows** — so they cannot deadlock
each other:

* a queue's row lock serialises everything that changes its waiting list (a customer
  joining, routing, leaving, a transfer in), so tickets are handed out in lock order and
  routing sees every waiting customer who joined before it (FIFO; nobody skipped);
* the agents' row locks make their load exact: an agent serving several queues is never
  given more than their capacity by two queues routed at once (a CHECK backs this up);
* :func:`bankhub.desk.routing.plan` decides, on the locked rows, who gets whom.

Row locks are ``FOR NO KEY UPDATE``: they exclude each other, but not the foreign-key
checks of inserts that reference the locked rows (a session naming its queue, an
assignment naming its agent), which would otherwise wait across transactions.

Transactions that free an agent's capacity (close, transfer) commit first; routing the
agent's queues follows in transactions of their own (and every node sweeps the queues
periodically), so freed capacity is always used.

Times of queueing, assignment and close are ``clock_timestamp()``: when the change was
made, not when its transaction began (a routing transaction may have waited for the lock
a close held), so a stint's start is never before the end of the one that freed it.
"""

from __future__ import annotations

from .agents import ServiceAgents
from .figures import ServiceFigures
from .queues import ServiceQueues
from .routing import ServiceRouting

__all__ = ["ServiceStore"]


class ServiceStore(ServiceRouting, ServiceQueues, ServiceAgents, ServiceFigures):
    """The desk's store: every part above on one database (and keyring, for the sealed
    texts). ``ServiceStore(db, keyring)``; a part alone (``ServiceQueues(db)``) serves a
    caller that needs only its tables."""
