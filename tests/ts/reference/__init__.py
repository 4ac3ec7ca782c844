"""Frozen copy of the first (unoptimised) SAMPLE-AES TS implementation, kept as the reference
that the optimised package code must match byte for byte (tests/ts/test_reference_pin.py)."""
