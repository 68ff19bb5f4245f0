"""The WebSocket gateway: moves bytes between sockets and the sans-I/O protocol core
(:mod:`.endpoint`), over a transport that never lets a stalled reader hold a close
(:mod:`.transport`). What reaches a socket's queue is :mod:`bankhub.delivery`'s work."""
