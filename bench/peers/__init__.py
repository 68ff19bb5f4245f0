"""The peer benchmark: Matrix Synapse and bankhub on the same work, one after the other.

``python -m bench.peers`` (see bench/README.md, section "Peers").
"""
