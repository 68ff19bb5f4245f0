"""The pure core of the relationship-manager and service-desk features (no I/O).

* :mod:`.routing` — which waiting customer goes to which agent, and the estimated wait;
* :mod:`.faq` — the bot's first line: keyword matching against a small FAQ;
* :mod:`.hours` — business hours per queue, in the queue's time zone;
* :mod:`.sealing` — agents' notes and CSAT comments sealed under the conversation's data key.

The I/O around them lives in :mod:`bankhub.actions.service`, :mod:`bankhub.actions.rm`
and :mod:`bankhub.storage.service`.
"""
