"""The WebSocket gateway: moves bytes between sockets and the sans-I/O protocol core."""
