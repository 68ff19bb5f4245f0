"""Delivery to the node's own connections: everything between a signal and a socket's queue.

* :mod:`.connection` — one authenticated socket: its bounded outbound queue and writer,
  its message streams (a :class:`~bankhub.protocol.streams.StreamFollower`);
* :mod:`.registry` — the node's connections by user, and what each broker signal does;
* :mod:`.following` — the one asyncio helper that fills stream gaps from Postgres;
* :mod:`.notices` — official-account notices, fanned out to this node's targeted followers;
* :mod:`.alerts` — transactional alerts to their recipients' sockets;
* :mod:`.fallback` and :mod:`.alerting` — the alert fallback channel and the node's alert
  runtime (its stores, loops and sweeps: ``hub.alerting``).

It sits below the hub and the actions: it imports storage, signals and the protocol core,
never an action.
"""
