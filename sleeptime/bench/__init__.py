"""Benchmarks: datasets, the multi-query runner, reports, and overhead/prefill scripts."""
