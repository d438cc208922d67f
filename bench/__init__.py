"""Benchmarks for clrfind (not part of the installed package)."""
