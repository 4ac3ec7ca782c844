"""Mutated inputs fail with a typed MediaError (or still encrypt), never another exception."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speke_packager.constants import Scheme
from speke_packager.errors import MediaError
from speke_packager.media.mp4 import Mp4Decryptor, Mp4Encryptor, probe_init
from speke_packager.model import ContentKey
from tests.mp4.conftest import Asset
from tests.mp4.helpers import KEY, KID

K1 = ContentKey(KID, KEY)
MUTATIONS = st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), min_size=1,
                     max_size=6)


def _mutate(data: bytes, muts: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in muts:
        b[pos % len(b)] = val
    return bytes(b[:cut]) if cut else bytes(b)


@pytest.mark.parametrize("name", ["h264-aac-fmp4", "hevc-fmp4", "vp9-opus-fmp4"])
@pytest.mark.parametrize("scheme", [Scheme.CENC, Scheme.CBCS], ids=lambda s: s.value)
def test_mutated_segments(name: str, scheme: Scheme, asset: Callable[[str], Asset]) -> None:
    a = asset(name)
    enc = Mp4Encryptor(a.init, scheme, {t.track_id: K1 for t in probe_init(a.init)},
                       iv_seed=b"fuzz")
    dec = Mp4Decryptor(enc.encrypted_init(), {KID: KEY})
    seg = a.segments[1]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    @given(MUTATIONS, st.one_of(st.none(), st.integers(1, 4000)))
    def run(muts: list[tuple[int, int]], cut: int | None) -> None:
        bad = _mutate(seg, muts, cut)
        try:
            out = enc.encrypt_segment(bad, segment_index=1)
        except MediaError:
            return
        try:
            dec.decrypt_segment(out)
        except MediaError:
            return

    run()


@pytest.mark.parametrize("name", ["h264-aac-fmp4", "hevc-fmp4", "vp9-opus-fmp4"])
def test_mutated_inits(name: str, asset: Callable[[str], Asset]) -> None:
    a = asset(name)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    @given(MUTATIONS, st.one_of(st.none(), st.integers(1, 2000)))
    def run(muts: list[tuple[int, int]], cut: int | None) -> None:
        bad = _mutate(a.init, muts, cut)
        try:
            tracks = probe_init(bad)
            enc = Mp4Encryptor(bad, Scheme.CBCS, {t.track_id: K1 for t in tracks})
            Mp4Decryptor(enc.encrypted_init(), {KID: KEY})
        except MediaError:
            return

    run()
