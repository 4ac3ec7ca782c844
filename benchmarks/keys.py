"""Random keys and IVs for one benchmark run, shared by every tool through a 0600 file."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from speke_packager.model import ContentKey


@dataclass(frozen=True)
class BenchKeys:
    """Keys of one run: one per CMAF track, one for the muxed TS; fixed test IVs."""

    video: ContentKey
    audio: ContentKey
    ts: ContentKey
    cenc_iv: bytes  # 8 bytes, the first sample's IV (per-sample IVs count up from it)
    cbcs_iv: bytes  # 16 bytes, constant IV
    ts_iv: bytes  # 16 bytes, AES-128 / SAMPLE-AES IV

    @classmethod
    def random(cls) -> BenchKeys:
        def ck() -> ContentKey:
            return ContentKey(kid=uuid.uuid4(), key=os.urandom(16))

        return cls(ck(), ck(), ck(), os.urandom(8), os.urandom(16), os.urandom(16))

    def save(self, path: Path) -> None:
        """Write the keys to ``path`` readable by the owner only."""
        doc = {
            **{name: {"kid": str(k.kid), "key": k.key.hex()}
               for name, k in (("video", self.video), ("audio", self.audio), ("ts", self.ts))},
            "cenc_iv": self.cenc_iv.hex(), "cbcs_iv": self.cbcs_iv.hex(),
            "ts_iv": self.ts_iv.hex(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)

    @classmethod
    def load(cls, path: Path) -> BenchKeys:
        doc = json.loads(path.read_text())

        def ck(name: str) -> ContentKey:
            return ContentKey(kid=uuid.UUID(doc[name]["kid"]), key=bytes.fromhex(doc[name]["key"]))

        return cls(ck("video"), ck("audio"), ck("ts"), bytes.fromhex(doc["cenc_iv"]),
                   bytes.fromhex(doc["cbcs_iv"]), bytes.fromhex(doc["ts_iv"]))
