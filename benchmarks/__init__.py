"""Throughput and memory benchmarks of speke-packager against Shaka Packager and raw AES.

Run ``python -m benchmarks`` (or ``make bench``); ``--smoke`` runs everything on a tiny asset.
Not a test package: pytest never collects it (``testpaths = ["tests"]``).
"""
