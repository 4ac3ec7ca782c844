"""Fetch a SPEKE v2 multi-DRM, multi-key set from a key server running in this process and
print it as a table: one row per content key with its track type, key period, KID, and the
signaling each DRM system sent. Keys are never printed.

    python examples/fetch_keys.py [KEY_PERIOD_INDEX]

The contract asks for Widevine, PlayReady, FairPlay and ClearKey for DASH and HLS fMP4 (cbcs),
with the PRESET-VIDEO-2 (SD and HD video keys) and PRESET-AUDIO-1 presets, for key period 0 (or
the index given): the request a live packager sends at each key period.
"""

from __future__ import annotations

import sys

from speke_packager.constants import DrmSystem, Packaging, Scheme, SpekeVersion
from speke_packager.keys import EncryptionContract, SpekeClient
from speke_packager.keyserver import KeyServer
from speke_packager.model import DrmSignal, KeyEntry, KeyPeriod

DRMS = (DrmSystem.WIDEVINE, DrmSystem.PLAYREADY, DrmSystem.FAIRPLAY, DrmSystem.CLEARKEY)


def signaling(sig: DrmSignal) -> str:
    """What one DRM system sent for a key: pssh box, DASH ContentProtectionData, HLS lines."""
    parts = []
    if sig.pssh:
        parts.append(f"pssh({len(sig.pssh)}B)")
    if sig.content_protection_data:
        parts.append("CPD")
    if sig.hls_media:
        parts.append("HLS")
    return "+".join(parts) or "-"


def row(entry: KeyEntry) -> list[str]:
    period = "-" if entry.period is None else str(entry.period.index)
    cells = [entry.track_type, period, str(entry.kid)]
    for drm in DRMS:
        sig = entry.signal(drm)
        cells.append("-" if sig is None else signaling(sig))
    return cells


def main() -> int:
    index = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    contract = EncryptionContract(
        content_id="fetch-keys-example",
        drm=DRMS,
        packaging=(Packaging.DASH, Packaging.HLS_FMP4),
        scheme=Scheme.CBCS,
        version=SpekeVersion.V2_0,
        video_preset="PRESET-VIDEO-2",
        audio_preset="PRESET-AUDIO-1",
        period=KeyPeriod(index=index),
    )
    with KeyServer(host="127.0.0.1", port=0) as ks:
        keyset = SpekeClient(ks.speke_url).fetch(contract)
    header = ["TRACK", "PERIOD", "KID", *(d.label for d in DRMS)]
    rows = [header, *(row(e) for e in keyset)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"SPEKE {keyset.version.value if keyset.version else '-'} answer for content id "
          f"{keyset.content_id!r}, scheme {keyset.scheme.value}: {len(keyset)} keys")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
