"""Regenerate the hand-made part of ``corpus/`` (run: python -m tests.hardening.make_corpus).

Every file is a small hostile input whose shape is described by its name. The corpus is
committed; this script documents how each file was made and may add new ones.
"""

from __future__ import annotations

import struct
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def box(fourcc: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    return struct.pack(">I", 8 + len(payload) if size is None else size) + fourcc + payload


def full(fourcc: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(fourcc, struct.pack(">I", version << 24 | flags) + payload)


FTYP = box(b"ftyp", b"iso6\x00\x00\x02\x00iso6cmfc")
MVHD = full(b"mvhd", bytes(96))


def mp4_init() -> dict[str, bytes]:
    tkhd = full(b"tkhd", bytes(80), flags=3)
    hdlr = full(b"hdlr", b"\x00" * 4 + b"vide" + bytes(12) + b"v\x00")
    stsd_huge = full(b"stsd", struct.pack(">I", 0xFFFFFFFF))
    stbl = box(b"stbl", stsd_huge)
    minf = box(b"minf", stbl)
    mdia = box(b"mdia", full(b"mdhd", bytes(20)) + hdlr + minf)
    trak = box(b"trak", tkhd + mdia)
    nested = b"".join(struct.pack(">I", 8 * (400 - i)) + b"trak" for i in range(400))
    return {
        "moov-claims-4GB.mp4": FTYP + box(b"moov", MVHD, size=0xFFFFFFFF),
        "moov-largesize-1TB.mp4": FTYP + struct.pack(">I4sQ", 1, b"moov", 1 << 40) + MVHD,
        "moov-size-zero-to-end.mp4": FTYP + box(b"moov", MVHD, size=0),
        "box-size-below-header.mp4": FTYP + struct.pack(">I4s", 7, b"moov") + MVHD,
        "stsd-entry-count-4G.mp4": FTYP + box(b"moov", MVHD + trak),
        "trak-nested-400-deep.mp4": FTYP + box(b"moov", MVHD + nested),
        "ftyp-only.mp4": FTYP,
        "empty.mp4": b"",
        "moov-without-trak.mp4": FTYP + box(b"moov", MVHD),
        "uuid-box-short.mp4": FTYP + box(b"uuid", b"\x01\x02"),
    }


def mp4_segment() -> dict[str, bytes]:
    mfhd = full(b"mfhd", struct.pack(">I", 1))
    tfhd = full(b"tfhd", struct.pack(">I", 1), flags=0x020000)
    tfdt = full(b"tfdt", struct.pack(">Q", 0), version=1)
    trun_huge = full(b"trun", struct.pack(">Ii", 0xFFFFFFFF, 0), flags=0x000301)
    trun_ok = full(b"trun", struct.pack(">IiII", 1, 0, 16, 0), flags=0x000301)
    senc_huge = full(b"senc", struct.pack(">I", 0xFFFFFFFF))
    moof = box(b"moof", mfhd + box(b"traf", tfhd + tfdt + trun_huge))
    moof_ok = box(b"moof", mfhd + box(b"traf", tfhd + tfdt + trun_ok))
    return {
        "mdat-claims-4GB.m4s": moof_ok + box(b"mdat", bytes(16), size=0xFFFFFFFF),
        "mdat-largesize-1TB.m4s": moof_ok + struct.pack(">I4sQ", 1, b"mdat", 1 << 40) + bytes(16),
        "trun-sample-count-4G.m4s": moof + box(b"mdat", bytes(64)),
        "senc-sample-count-4G.m4s": box(b"moof", mfhd + box(b"traf", tfhd + tfdt + trun_ok
                                                           + senc_huge)) + box(b"mdat", bytes(16)),
        "moof-without-traf.m4s": box(b"moof", mfhd) + box(b"mdat", bytes(8)),
        "mdat-before-moof.m4s": box(b"mdat", bytes(16)) + moof_ok,
        "moof-claims-4GB.m4s": box(b"moof", mfhd, size=0xFFFFFFFF),
        "zero-size-box.m4s": struct.pack(">I4s", 0, b"free"),
        "styp-only.m4s": box(b"styp", b"msdh\x00\x00\x00\x00msdhmsix"),
    }


def ts_packet(pid: int, payload: bytes, *, pusi: bool = True, cc: int = 0, af: bytes | None = None
              ) -> bytes:
    ctrl = 0x30 if af is not None else 0x10
    head = struct.pack(">BHB", 0x47, (0x4000 if pusi else 0) | pid, ctrl | cc)
    body = (bytes([len(af)]) + af if af is not None else b"") + payload
    return (head + body + b"\xff" * 188)[:188]


def ts() -> dict[str, bytes]:
    pat_long = b"\x00" + b"\x00\xbf\xff" + b"\x00\x01\xc1\x00\x00" + b"\x00\x01\xe1\x00"
    pmt_loop = (b"\x00\x02\xb0\xff\x00\x01\xc1\x00\x00\xe1\x00\xff\xff"
                + b"\x1b\xe1\x00\xff\xff")
    pat = b"\x00\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01\xe1\x00\x00\x00\x00\x00"
    pes_huge_header = b"\x00\x00\x01\xe0\x00\x00\x80\x80\xff" + b"\x00" * 20
    return {
        "one-sync-byte.ts": b"\x47",
        "half-packet.ts": ts_packet(0, pat)[:94],
        "garbage-188.ts": bytes(range(188)),
        "pat-section-length-4095.ts": ts_packet(0, pat_long),
        "pmt-es-info-length-4095.ts": ts_packet(0, pat) + ts_packet(0x100, pmt_loop),
        "adaptation-field-255.ts": ts_packet(0, b"", af=b"\x00" * 200),
        "pes-header-length-255.ts": ts_packet(0, pat) + ts_packet(0x100, pes_huge_header),
        "no-pat-only-pes.ts": ts_packet(0x101, pes_huge_header) * 4,
        "sync-lost-after-one.ts": ts_packet(0, pat) + b"\x00" * 188,
    }


def nal() -> dict[str, bytes]:
    return {
        "one-byte-sps.bin": b"\x67",
        "one-byte-hevc-sps.bin": b"\x42",
        "sps-all-zero-exp-golomb.bin": b"\x67\x64\x00\x1f" + b"\x00" * 64,
        "sps-ue-overflow.bin": b"\x67\x64\x00\x1f\x00\x00\x00\x00\x00\x01\xff",
        "pps-only-emulation-bytes.bin": b"\x68" + b"\x00\x00\x03" * 40,
        "hevc-sps-zero-run.bin": b"\x42\x01" + b"\x00" * 80,
        "hevc-pps-max.bin": b"\x44\x01" + b"\xff" * 64,
        "slice-idr-truncated.bin": b"\x65\x88",
        "hevc-idr-truncated.bin": b"\x26\x01\xaf",
        "avcc-count-31-sps.bin": b"\x01\x64\x00\x1f\xff\xff" + b"\x00\x10" + b"\x67" * 4,
        "hvcc-array-count-max.bin": bytes(22) + b"\xff" + b"\x20\xff\xff",
    }


def cpix() -> dict[str, bytes]:
    ns = b'xmlns:cpix="urn:dashif:org:cpix"'
    return {
        "empty.xml": b"",
        "not-xml.xml": b"\x00\x01\x02PK\x03\x04",
        "root-only.xml": b"<cpix:CPIX " + ns + b"/>",
        "wrong-root.xml": b"<html><body/></html>",
        "unclosed.xml": b"<cpix:CPIX " + ns + b"><cpix:ContentKeyList>",
        "huge-attribute.xml": b"<cpix:CPIX " + ns + b' contentId="' + b"A" * 200_000 + b'"/>',
        "bad-kid.xml": (b"<cpix:CPIX " + ns + b"><cpix:ContentKeyList><cpix:ContentKey "
                        b'kid="not-a-uuid"/></cpix:ContentKeyList></cpix:CPIX>'),
        "kid-twice.xml": (b"<cpix:CPIX " + ns + b"><cpix:ContentKeyList>"
                          + b'<cpix:ContentKey kid="00000000-0000-0000-0000-000000000001"/>' * 2
                          + b"</cpix:ContentKeyList></cpix:CPIX>"),
        "invalid-utf8.xml": b"<cpix:CPIX " + ns + b' contentId="\xff\xfe"/>',
        "deep-nesting.xml": b"<a>" * 300 + b"</a>" * 300,
        "utf16-bom.xml": '\ufeff<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix"/>'.encode("utf-16-le"),
    }


def hls() -> dict[str, bytes]:
    return {
        "empty.m3u8": b"",
        "no-extm3u.m3u8": b"#EXTINF:1,\na.ts\n",
        "byterange-4GB.m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                              b"#EXT-X-BYTERANGE:4294967296@0\na.mp4\n#EXT-X-ENDLIST\n",
        "byterange-no-offset-first.m3u8": b"#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.mp4\n",
        "extinf-nan.m3u8": b"#EXTM3U\n#EXTINF:nan,\na.ts\n#EXTINF:-1,\nb.ts\n#EXTINF:1e400,\nc.ts\n",
        "key-unterminated-quote.m3u8": b'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k\n#EXTINF:1,\na.ts\n',
        "iv-odd-length.m3u8": b"#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\",IV=0x123\n#EXTINF:1,\na\n",
        "crlf-bom-nul.m3u8": b"\xef\xbb\xbf#EXTM3U\r\n#EXTINF:1,\r\na\x00.ts\r\n",
        "stream-inf-without-uri.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
        "map-without-uri.m3u8": b"#EXTM3U\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n#EXTINF:1,\na.mp4\n",
        "media-sequence-huge.m3u8": b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:" + b"9" * 400 + b"\n#EXTINF:1,\na.ts\n",
        "many-attributes.m3u8": b"#EXTM3U\n#EXT-X-KEY:" + b",".join(b"A%d=1" % i for i in range(5000)) + b"\n",
    }


def mpd() -> dict[str, bytes]:
    m = b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S">'
    rep = b'<Representation id="v" bandwidth="1">'
    return {
        "empty.mpd": b"",
        "not-an-mpd.mpd": b"<html/>",
        "dynamic.mpd": m.replace(b"static", b"dynamic") + b"</MPD>",
        "xlink-period.mpd": m + b'<Period xmlns:xlink="http://www.w3.org/1999/xlink" '
                                b'xlink:href="http://127.0.0.1:1/p"/></MPD>',
        "already-protected.mpd": m + b"<Period><AdaptationSet><ContentProtection "
                                     b'schemeIdUri="urn:mpeg:dash:mp4protection:2011"/>'
                                     b"</AdaptationSet></Period></MPD>",
        "no-addressing.mpd": m + b"<Period><AdaptationSet>" + rep
                             + b"</Representation></AdaptationSet></Period></MPD>",
        "bad-duration.mpd": m.replace(b"PT4S", b"P1Y2XT") + b"<Period/></MPD>",
        "segmentlist-bad-range.mpd": m + b"<Period><AdaptationSet>" + rep
                                     + b'<SegmentList><SegmentURL mediaRange="9-1"/>'
                                       b"</SegmentList></Representation></AdaptationSet>"
                                       b"</Period></MPD>",
        "template-unknown-identifier.mpd": m + b"<Period><AdaptationSet>" + rep
                                           + b'<SegmentTemplate media="$Foo$" duration="1"/>'
                                             b"</Representation></AdaptationSet></Period></MPD>",
        "billion-laughs.mpd": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                              + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10)
                                         for i in range(9))
                              + b"]>" + m + b"<BaseURL>&j;</BaseURL></MPD>",
    }


def main() -> None:
    for target, files in (("mp4-init", mp4_init()), ("mp4-segment", mp4_segment()),
                          ("ts", ts()), ("nal", nal()), ("cpix", cpix()), ("hls", hls()),
                          ("mpd", mpd())):
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)


if __name__ == "__main__":
    main()
