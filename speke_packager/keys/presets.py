"""SPEKE v2 encryption-contract presets -> CPIX usage rules (speke.md §4).

Only ``intendedTrackType`` and the Video/Audio filters go on the wire; the preset names are AWS
vocabulary. ``SD+HD1`` gets one filter per sub-type, as the AWS contract page describes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import (
    AUDIO_PRESETS,
    HD1_MAX_PIXELS,
    HD_MAX_PIXELS,
    SD_MAX_PIXELS,
    UHD1_MAX_PIXELS,
    VIDEO_PRESETS,
)
from ..errors import UsageError
from ..model import AudioFilter, VideoFilter

__all__ = ["RuleTemplate", "contract_rules"]


@dataclass(frozen=True, slots=True)
class RuleTemplate:
    """One key of the encryption contract: its track type and filters."""

    track_type: str
    video_filters: tuple[VideoFilter, ...] = ()
    audio_filters: tuple[AudioFilter, ...] = ()


def _v(track_type: str, *bounds: tuple[int | None, int | None]) -> RuleTemplate:
    return RuleTemplate(
        track_type, video_filters=tuple(VideoFilter(min_pixels=a, max_pixels=b) for a, b in bounds)
    )


def _a(track_type: str, lo: int | None, hi: int | None) -> RuleTemplate:
    return RuleTemplate(track_type, audio_filters=(AudioFilter(min_channels=lo, max_channels=hi),))


_SD = _v("SD", (None, SD_MAX_PIXELS))
_HD = _v("HD", (SD_MAX_PIXELS + 1, HD_MAX_PIXELS))
_HD_OPEN = _v("HD", (SD_MAX_PIXELS + 1, None))
_HD1 = _v("HD1", (SD_MAX_PIXELS + 1, HD1_MAX_PIXELS))
_HD2 = _v("HD2", (HD1_MAX_PIXELS + 1, HD_MAX_PIXELS))
_UHD = _v("UHD", (HD_MAX_PIXELS + 1, None))
_UHD1 = _v("UHD1", (HD_MAX_PIXELS + 1, UHD1_MAX_PIXELS))
_UHD2 = _v("UHD2", (UHD1_MAX_PIXELS + 1, None))
_SD_HD1 = _v("SD+HD1", (None, SD_MAX_PIXELS), (SD_MAX_PIXELS + 1, HD1_MAX_PIXELS))

VIDEO_RULES: dict[str, tuple[RuleTemplate, ...]] = {
    "PRESET-VIDEO-1": (RuleTemplate("VIDEO", video_filters=(VideoFilter(),)),),
    "PRESET-VIDEO-2": (_SD, _HD_OPEN),
    "PRESET-VIDEO-3": (_SD, _HD, _UHD),
    "PRESET-VIDEO-4": (_SD, _HD, _UHD1, _UHD2),
    "PRESET-VIDEO-5": (_SD, _HD1, _HD2, _UHD1, _UHD2),
    "PRESET-VIDEO-6": (_SD, _HD1, _HD2, _UHD),
    "PRESET-VIDEO-7": (_SD_HD1, _HD2, _UHD),
    "PRESET-VIDEO-8": (_SD_HD1, _HD2, _UHD1, _UHD2),
}

AUDIO_RULES: dict[str, tuple[RuleTemplate, ...]] = {
    "PRESET-AUDIO-1": (RuleTemplate("AUDIO", audio_filters=(AudioFilter(),)),),
    "PRESET-AUDIO-2": (_a("STEREO_AUDIO", None, 2), _a("MULTICHANNEL_AUDIO", 3, None)),
    "PRESET-AUDIO-3": (
        _a("STEREO_AUDIO", None, 2),
        _a("MULTICHANNEL_AUDIO_3_6", 3, 6),
        _a("MULTICHANNEL_AUDIO_7", 7, None),
    ),
}

SHARED_RULE = RuleTemplate("ALL", video_filters=(VideoFilter(),), audio_filters=(AudioFilter(),))


def _norm(preset: str, allowed: tuple[str, ...], side: str) -> str:
    p = preset.strip().upper()
    if p not in allowed:
        raise UsageError(f"unknown {side} preset {preset!r} (one of {', '.join(allowed)})")
    return p


def contract_rules(video_preset: str, audio_preset: str) -> tuple[RuleTemplate, ...]:
    """The usage rules (one per key) for a pair of presets.

    SHARED must be on both sides (one ``ALL`` key); UNENCRYPTED leaves that side clear and may
    not be on both sides or paired with SHARED."""
    v = _norm(video_preset, VIDEO_PRESETS, "video")
    a = _norm(audio_preset, AUDIO_PRESETS, "audio")
    if "SHARED" in (v, a):
        if v != a:
            raise UsageError("preset SHARED must be used for both video and audio")
        return (SHARED_RULE,)
    if v == a == "UNENCRYPTED":
        raise UsageError("video and audio cannot both be UNENCRYPTED: nothing to encrypt")
    rules: tuple[RuleTemplate, ...] = ()
    if v != "UNENCRYPTED":
        rules += VIDEO_RULES[v]
    if a != "UNENCRYPTED":
        rules += AUDIO_RULES[a]
    return rules
