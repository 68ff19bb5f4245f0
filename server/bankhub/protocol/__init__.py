"""Protocol v1, without I/O: frame types, the per-connection session, delivery cursors, the stream follower."""
