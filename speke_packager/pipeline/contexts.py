"""Per-track encryption contexts: which key a track gets (from its real media properties), the
IVs, and the transforms that turn clear init sections and segments into encrypted ones.

The media packages are imported when a context of their kind is made: a CMAF package never
loads the MPEG-TS code, a TS package never the MP4 code (start-up is a measurable part of a
short ``encrypt-vod`` run)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from .._io import ThreadScratch
from ..constants import Scheme
from ..errors import UnsupportedMediaError, UsageError
from ..media.aes128 import encrypt_aes128, encrypt_aes128_into
from ..model import ContentKey, KeyEntry, KeySet, TrackInfo, TrackKind
from .plan import Part, Transform
from .protection import Protection, protect, rendition_iv

if TYPE_CHECKING:
    from ..media.mp4 import Mp4Encryptor
    from ..media.ts import SampleAesEncryptor


def container_of(head: bytes) -> str:
    """'ts', 'mp4', 'webvtt' or 'unknown' from the first bytes of a segment."""
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return "ts"
    if len(head) >= 1 and head[0] == 0x47 and len(head) % 188 == 0:
        return "ts"
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"styp", b"moof", b"sidx", b"emsg", b"prft",
                                        b"moov", b"free"):
        return "mp4"
    text = head.lstrip(b"\xef\xbb\xbf")
    if text.startswith(b"WEBVTT"):
        return "webvtt"
    return "unknown"


@dataclass(slots=True)
class KeyChoice:
    """The key set of the run and one IV per KID (shared by HLS and DASH)."""

    keyset: KeySet
    scheme: Scheme
    explicit_iv: bytes | None
    iv_source: Callable[[int], bytes]
    key_uri: str | None = None
    clear_lead: bool = False  # some segments stay clear: init keeps a clear sample entry
    _ivs: dict[UUID, bytes] = field(default_factory=dict)
    _seeds: dict[UUID, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def select(self, track: TrackInfo) -> KeyEntry | None:
        return self.keyset.select(track)

    def iv(self, key: ContentKey) -> bytes:
        """The 16-byte IV for ``key``: the key server's (``key.iv``, set by ``keys``), else
        ``--iv``, else a random one; chosen once per KID."""
        with self._lock:
            if key.kid not in self._ivs:
                self._ivs[key.kid] = rendition_iv(key, lambda: (
                    self.explicit_iv if self.explicit_iv is not None else self.iv_source(16)))
            return self._ivs[key.kid]

    def protect(self, entry: KeyEntry, *, fmp4: bool) -> Protection:
        """The protection of a rendition encrypted with ``entry`` (:mod:`.protection`)."""
        return protect(entry, self.scheme, fmp4=fmp4, iv=self.iv, clear_lead=self.clear_lead)

    def seed(self, key: ContentKey) -> bytes:
        """The cenc per-sample IV seed (8 bytes) for ``key``."""
        with self._lock:
            if key.kid not in self._seeds:
                self._seeds[key.kid] = self.iv_source(8)
            return self._seeds[key.kid]

    def uri_for(self, entry: KeyEntry) -> str | None:
        if self.key_uri is None:
            return None
        return self.key_uri.replace("{kid}", entry.kid.hex)


def _one_entry(tracks: Sequence[TrackInfo], entries: dict[int, KeyEntry], what: str
               ) -> KeyEntry | None:
    distinct = {e.kid: e for e in entries.values()}
    if len(distinct) > 1:
        raise UsageError(f"{what} holds several tracks that select different keys "
                         f"({', '.join(str(k) for k in distinct)}); HLS and DASH need one key "
                         "per rendition: give one key for all tracks or demuxed renditions")
    return next(iter(distinct.values()), None)


class _Aes128Segment:
    """AES-128 (whole segment, CBC, PKCS#7) as a parts transform: one cipher call into a reused
    per-worker output buffer. The repr names no key."""

    __slots__ = ("_iv", "_key")
    _out = ThreadScratch()

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._key = key
        self._iv = iv

    def __repr__(self) -> str:
        return "<AES-128 segment transform>"

    def __call__(self, data: bytes) -> bytes:
        return encrypt_aes128(data, self._key, self._iv)

    def parts(self, buf: memoryview) -> Sequence[Part]:
        out = self._out.view(len(buf) + 31)
        n = encrypt_aes128_into(buf, out, self._key, self._iv)
        return [out[:n]]


class _SampleAesSegment:
    """SAMPLE-AES (MPEG-TS) as a parts transform: ``parts`` encrypts the segment in place in the
    worker's reused read buffer and hands back slices of it (plus the few packets added to PES
    that grew), no copy and no join. The repr names no key. Most of its time is Python (PES
    parsing, remuxing) holding the GIL: :func:`.plan.execute` runs it in worker processes."""

    __slots__ = ("_enc",)
    holds_gil = True

    def __init__(self, enc: SampleAesEncryptor) -> None:
        self._enc = enc

    def __repr__(self) -> str:
        return "<SAMPLE-AES segment transform>"

    def __call__(self, data: bytes) -> bytes:
        return self._enc.encrypt_segment(data)

    def parts(self, buf: memoryview) -> Sequence[Part]:
        return self._enc.encrypt_segment_parts(buf, in_place=True)


class _Mp4Segment:
    """One fMP4 segment's encryption; ``parts`` encrypts the samples in place in the worker's
    reused buffer and hands back the new boxes and slices of it (no join, no copy)."""

    __slots__ = ("_clear", "_enc", "_index")

    def __init__(self, enc: Mp4Encryptor, index: int, clear: bool) -> None:
        self._enc = enc
        self._index = index
        self._clear = clear

    def __repr__(self) -> str:
        return f"<fMP4 segment transform {self._index}>"

    def __call__(self, data: bytes) -> bytes:
        # encrypt_segment keeps a segment's own sidx consistent with the grown fragments
        return self._enc.encrypt_segment(data, segment_index=self._index, clear=self._clear)

    def parts(self, buf: memoryview) -> Sequence[Part]:
        return self._enc.encrypt_segment_parts(buf, segment_index=self._index,
                                               clear=self._clear, in_place=True)


class Mp4Context:
    """One fMP4 init section and the encryptor for the segments that use it."""

    def __init__(self, init: bytes, choice: KeyChoice, *, what: str) -> None:
        self.what = what
        self.scheme = choice.scheme
        if choice.scheme is Scheme.SAMPLE_AES:
            raise UnsupportedMediaError(
                f"{what}: SAMPLE-AES is for MPEG-TS segments; fMP4 segments use cbcs "
                "(HLS METHOD=SAMPLE-AES on fMP4 is cbcs): use --scheme cbcs")
        from ..media.mp4 import Mp4Encryptor, probe_init

        self.tracks: list[TrackInfo] = probe_init(init)
        self.entries: dict[int, KeyEntry] = {}
        for t in self.tracks:
            e = choice.select(t)
            if e is not None:
                self.entries[t.track_id] = e
        self.entry = _one_entry(self.tracks, self.entries, what)
        self._init = init
        self._enc: Mp4Encryptor | None = None
        self._init_out: bytes | None = None
        self._aes_key: bytes | None = None
        self._aes_iv: bytes | None = None
        if self.entry is None:
            return
        p = choice.protect(self.entry, fmp4=True)  # one KID for every track (_one_entry)
        if p.scheme is Scheme.AES_128:
            self._aes_key = p.key.key
            self._aes_iv = p.iv
            return
        keys = {tid: e.key for tid, e in self.entries.items()}
        if p.scheme is Scheme.CBCS:
            self._enc = Mp4Encryptor(init, p.scheme, keys, pssh=p.pssh, iv_size=p.iv_size,
                                     constant_iv=p.iv, clear_lead=p.clear_lead)
        else:
            self._enc = Mp4Encryptor(init, p.scheme, keys, pssh=p.pssh,
                                     iv_seed=choice.seed(p.key), iv_size=p.iv_size,
                                     clear_lead=p.clear_lead)

    @property
    def encrypted(self) -> bool:
        return bool(self.entries)

    @property
    def kind(self) -> str:
        kinds = {t.kind for t in self.tracks}
        return (TrackKind.VIDEO if TrackKind.VIDEO in kinds else next(iter(kinds),
                                                                      TrackKind.OTHER)).value

    def init_transform(self) -> Transform | None:
        if self._enc is None:
            return None
        enc = self._enc

        def run(_data: bytes) -> bytes:
            if self._init_out is None:
                self._init_out = enc.encrypted_init()
            return self._init_out

        return run

    def segment_transform(self, index: int, *, clear: bool) -> Transform | None:
        if not self.entries:
            return None
        if self._aes_key is not None:
            if clear:
                return None
            assert self._aes_iv is not None
            return _Aes128Segment(self._aes_key, self._aes_iv)
        assert self._enc is not None
        return _Mp4Segment(self._enc, index, clear)


class TsContext:
    """One HLS TS rendition: its tracks (from the first segment) and its one key."""

    def __init__(self, first_segment: bytes, choice: KeyChoice, *, what: str) -> None:
        self.what = what
        if choice.scheme in (Scheme.CENC, Scheme.CBCS):
            raise UnsupportedMediaError(
                f"{what}: MPEG-TS segments cannot carry {choice.scheme.value}; use --scheme "
                "aes-128 or sample-aes for TS, or give fMP4/media-file input for cenc/cbcs")
        from ..media.ts import SampleAesEncryptor, probe_ts

        self.tracks = probe_ts(first_segment)
        entries: dict[int, KeyEntry] = {}
        for t in self.tracks:
            e = choice.select(t)
            if e is not None:
                entries[t.track_id] = e
        self.entry = _one_entry(self.tracks, entries, what)
        self.scheme = choice.scheme
        self._key = self.entry.key.key if self.entry else None
        self._iv = choice.protect(self.entry, fmp4=False).iv if self.entry else None
        self._sae = (SampleAesEncryptor(self._key, self._iv)
                     if self._key is not None and self._iv is not None
                     and choice.scheme is Scheme.SAMPLE_AES else None)

    @property
    def encrypted(self) -> bool:
        return self.entry is not None

    @property
    def kind(self) -> str:
        kinds = {t.kind for t in self.tracks}
        return (TrackKind.VIDEO if TrackKind.VIDEO in kinds else next(iter(kinds),
                                                                      TrackKind.OTHER)).value

    def segment_transform(self, *, clear: bool) -> Transform | None:
        if clear or self._key is None or self._iv is None:
            return None
        if self._sae is not None:
            return _SampleAesSegment(self._sae)
        return _Aes128Segment(self._key, self._iv)
