"""Frozen copy of the first (unoptimised) SAMPLE-AES PES path, kept as the reference that the
optimised package code must match byte for byte (tests/ts/test_reference_pin.py,
tests/ts/test_recorded_digests.py): es_crypto.py (NAL and audio frame encryption), pes.py (PES
gathering and re-packetisation) and sample_aes.py (demux, encrypt, remux). TS packet indexing,
PAT/PMT (media/ts/psi.py) and the SAMPLE-AES PMT signalling (media/ts/sample_aes_pmt.py) come from
the package: the copies of them here were verbatim; they are checked by tests/ts/tools.py's
independent reader (test_ts_structure.py), FFmpeg, Shaka Packager and the recorded digests."""
