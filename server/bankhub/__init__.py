"""bankhub: a bank-grade instant-messaging and notification hub."""

__version__ = "0.1.0"
