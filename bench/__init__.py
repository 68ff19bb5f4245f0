"""bankhub benchmarks: ``python -m bench`` (the suite), ``python -m bench.run`` (see bench/README.md)."""
