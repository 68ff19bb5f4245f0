"""The embeddable service widget's pure parts: visitor tokens and partner origins (no I/O).

See :mod:`bankhub.widget.tokens` and :mod:`bankhub.widget.origins`, and docs/widget.md.
"""
