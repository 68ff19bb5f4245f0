"""State changes: validate, authorise (through :mod:`bankhub.policy`), write, then emit signals.

Gateways and HTTP handlers stay thin: they decode input, call an action, encode the result.
"""
