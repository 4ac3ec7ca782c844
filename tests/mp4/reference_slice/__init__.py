"""Frozen copy of the first (per-call BitReader) H.264/HEVC slice-header parsers, kept as the
oracle the optimised package code must match (tests/mp4/test_slice_header_speed.py). Do not
optimise: it is the definition of the expected result."""
