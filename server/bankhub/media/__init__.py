"""Pictures and voice notes: the pure pipeline (no I/O, no storage), and its two I/O parts.

* :mod:`.sniff` — the type, judged by content (an allow-list of magic bytes);
* :mod:`.images` — pixel cap from the header, re-encoding without metadata, thumbnails;
* :mod:`.voice` — the container read, the duration and a waveform summary;
* :mod:`.sealing` — AES-GCM of each stored variant under the conversation's data key;
* :mod:`.urls` — the short-lived signed URLs media are served from;
* :mod:`.clamd` — the optional virus scan (clamd's INSTREAM protocol; network I/O);
* :mod:`.runtime` — a node's media state, ``hub.media`` (store, blob store, URL keys).

The pure modules sit in the core layer; ``clamd`` and ``runtime`` in the layers of their I/O
(see docs/architecture.md).
"""
