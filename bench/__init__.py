"""Benchmarks: commands that measure and print figures; tests never assert timings."""
