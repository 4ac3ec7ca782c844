"""Progressive MP4 recipes (moov before or after the mdat) for the native fragmenter tests,
added to :data:`fixtures.media.RECIPES` on import."""

from __future__ import annotations

from fixtures.media import RECIPES, Recipe

_V = ("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=6")
_A = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6")
_X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50",
         "-keyint_min", "50", "-sc_threshold", "0", "-bf", "2")
_X265 = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
         "keyint=50:min-keyint=50:bframes=2:log-level=error", "-pix_fmt", "yuv420p")

# progressive MP4s (moov before or after the mdat), registered at run time
_PROGRESSIVE = {
    # B-frames (ctts) and an edit list (the first frame's composition offset, AAC priming)
    "h264-aac-mp4": None,  # from fixtures.media
    "hevc-aac-prog-mp4": (*_V, *_A, *_X265, "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "96k"),
    "hev1-ac3-prog-mp4": (*_V, *_A, *_X265, "-tag:v", "hev1", "-c:a", "ac3", "-b:a", "192k",
                          "-movflags", "+faststart"),
    "eac3-prog-mp4": (*_A, "-c:a", "eac3", "-b:a", "192k"),
    "h264-avc3-aac-prog-mp4": (*_V, *_A, *_X264, "-tag:v", "avc3", "-c:a", "aac"),
    "vp9-opus-prog-mp4": (*_V, *_A, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used",
                          "8", "-g", "50", "-b:v", "300k", "-c:a", "libopus", "-b:a", "64k"),
    # ctts version 1 with negative composition offsets (trun version 1 in the output)
    "h264-negcts-prog-mp4": (*_V, *_X264, "-movflags", "+negative_cts_offsets"),
    # audio starts 0.5 s late: an empty edit (a start delay) in its edit list
    "h264-aac-delay-mp4": (*_V, "-itsoffset", "0.5", *_A, *_X264, "-c:a", "aac",
                           "-map", "0:v", "-map", "1:a"),
}
for _name, _args in _PROGRESSIVE.items():
    if _args is not None and _name not in RECIPES:
        RECIPES[_name] = Recipe(_name, _args, ".mp4")
# QuickTime: the AAC track has a version 1 sound description (esds inside wave)
if "h264-aac-mov" not in RECIPES:
    RECIPES["h264-aac-mov"] = Recipe("h264-aac-mov", (*_V, *_A, *_X264, "-c:a", "aac"), ".mov")
