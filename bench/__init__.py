"""Benchmarks: `python -m bench [NAME ...]` runs each module's `main()` and prints its figures."""
