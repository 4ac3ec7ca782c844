"""An independent structure check of MPDs, written for the tests from ISO/IEC 23009-1's MPD
schema (element order and cardinality, required attributes, no unknown attribute in no
namespace, integer and duration types) for the elements a packager writes. Runs on every MPD test,
so a clone without ../shared/dash-schema still checks MPD structure; where the XSD is present it
runs as well (tests/conftest.py ``check_mpd``), and tests/manifests/test_mpd_structure.py shows
both reject the same broken MPDs."""

from __future__ import annotations

import re
from collections.abc import Callable

from lxml import etree

NS = "urn:mpeg:dash:schema:mpd:2011"
_DURATION = re.compile(r"^-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_UINT = re.compile(r"^\d+$")
_INT = re.compile(r"^-?\d+$")
_BOOL = {"true", "false", "0", "1"}

_REP_BASE_CHILDREN = [
    ("FramePacking", None), ("AudioChannelConfiguration", None), ("ContentProtection", None),
    ("OutputProtection", 1), ("EssentialProperty", None), ("SupplementalProperty", None),
    ("InbandEventStream", None), ("Switching", None), ("RandomAccess", None),
    ("GroupLabel", None), ("Label", None), ("ProducerReferenceTime", None),
    ("ContentPopularityRate", None), ("Resync", None)]
_REP_BASE_ATTRS = {
    "profiles", "width", "height", "sar", "frameRate", "audioSamplingRate", "mimeType",
    "segmentProfiles", "codecs", "containerProfiles", "maximumSAPPeriod", "startWithSAP",
    "maxPlayoutRate", "codingDependency", "scanType", "selectionPriority", "tag"}
_SEG_BASE_ATTRS = {"timescale", "eptDelta", "pdDelta", "presentationTimeOffset",
                   "presentationDuration", "timeShiftBufferDepth", "indexRange", "indexRangeExact",
                   "availabilityTimeOffset", "availabilityTimeComplete"}
_MULTI_ATTRS = _SEG_BASE_ATTRS | {"duration", "startNumber", "endNumber"}
_SEG_BASE_CHILDREN = [("Initialization", 1), ("RepresentationIndex", 1), ("FailoverContent", 1)]
_MULTI_CHILDREN = [*_SEG_BASE_CHILDREN, ("SegmentTimeline", 1), ("BitstreamSwitching", 1)]
_DESCRIPTOR = ({"schemeIdUri"}, {"schemeIdUri", "value", "id"})

# element: (ordered (child, max count or None), required attributes, allowed attributes)
RULES: dict[str, tuple[list[tuple[str, int | None]], set[str], set[str]]] = {
    "MPD": ([("ProgramInformation", None), ("BaseURL", None), ("Location", None),
             ("PatchLocation", None), ("ServiceDescription", None), ("InitializationSet", None),
             ("InitializationGroup", None), ("InitializationPresentation", None),
             ("ContentProtection", None), ("Period", None), ("Metrics", None),
             ("EssentialProperty", None), ("SupplementalProperty", None), ("UTCTiming", None),
             ("LeapSecondInformation", 1)],
            {"profiles", "minBufferTime"},
            {"id", "profiles", "type", "availabilityStartTime", "publishTime",
             "availabilityEndTime", "mediaPresentationDuration", "minimumUpdatePeriod",
             "minBufferTime", "timeShiftBufferDepth", "suggestedPresentationDelay",
             "maxSegmentDuration", "maxSubsegmentDuration"}),
    "Period": ([("BaseURL", None), ("SegmentBase", 1), ("SegmentList", 1), ("SegmentTemplate", 1),
                ("AssetIdentifier", 1), ("EventStream", None), ("ServiceDescription", None),
                ("ContentProtection", None), ("AdaptationSet", None), ("Subset", None),
                ("SupplementalProperty", None), ("EmptyAdaptationSet", None),
                ("GroupLabel", None), ("Preselection", None)],
               set(), {"id", "start", "duration", "bitstreamSwitching", "xlink:href",
                       "xlink:actuate"}),
    "AdaptationSet": ([*_REP_BASE_CHILDREN, ("Accessibility", None), ("Role", None),
                       ("Rating", None), ("Viewpoint", None), ("ContentComponent", None),
                       ("BaseURL", None), ("SegmentBase", 1), ("SegmentList", 1),
                       ("SegmentTemplate", 1), ("Representation", None)],
                      set(), _REP_BASE_ATTRS | {
                          "id", "group", "lang", "contentType", "par", "minBandwidth",
                          "maxBandwidth", "minWidth", "maxWidth", "minHeight", "maxHeight",
                          "minFrameRate", "maxFrameRate", "segmentAlignment",
                          "subsegmentAlignment", "subsegmentStartsWithSAP",
                          "bitstreamSwitching", "initializationSetRef",
                          "initializationPrincipal", "xlink:href", "xlink:actuate"}),
    "Representation": ([*_REP_BASE_CHILDREN, ("BaseURL", None), ("ExtendedBandwidth", None),
                        ("SubRepresentation", None), ("SegmentBase", 1), ("SegmentList", 1),
                        ("SegmentTemplate", 1)],
                       {"id", "bandwidth"}, _REP_BASE_ATTRS | {
                           "id", "bandwidth", "qualityRanking", "dependencyId", "associationId",
                           "associationType", "mediaStreamStructureId"}),
    "SegmentTemplate": (_MULTI_CHILDREN, set(),
                        _MULTI_ATTRS | {"media", "index", "initialization", "bitstreamSwitching"}),
    "SegmentList": ([*_MULTI_CHILDREN, ("SegmentURL", None)], set(),
                    _MULTI_ATTRS | {"xlink:href", "xlink:actuate"}),
    "SegmentBase": (_SEG_BASE_CHILDREN, set(), _SEG_BASE_ATTRS),
    "SegmentTimeline": ([("S", None)], set(), set()),
    "S": ([], {"d"}, {"t", "n", "d", "r", "k"}),
    "Initialization": ([], set(), {"sourceURL", "range"}),
    "RepresentationIndex": ([], set(), {"sourceURL", "range"}),
    "SegmentURL": ([], set(), {"media", "mediaRange", "index", "indexRange"}),
    "ContentProtection": ([], _DESCRIPTOR[0], _DESCRIPTOR[1] | {"robustness", "refId", "ref"}),
}
for _d in ("Role", "AudioChannelConfiguration", "EssentialProperty", "SupplementalProperty",
           "Accessibility"):
    RULES[_d] = ([], *_DESCRIPTOR)

_TYPES = {
    "bandwidth": _UINT, "width": _UINT, "height": _UINT, "timescale": _UINT,
    "startNumber": _UINT, "endNumber": _UINT, "duration": None, "t": _UINT, "d": _UINT,
    "n": _UINT, "r": _INT, "qualityRanking": _UINT, "group": _UINT, "startWithSAP": _UINT,
    "presentationTimeOffset": _UINT,
}
_DURATIONS = {"mediaPresentationDuration", "minBufferTime", "minimumUpdatePeriod",
              "timeShiftBufferDepth", "suggestedPresentationDelay", "maxSegmentDuration",
              "maxSubsegmentDuration", "start"}


def mpd_problems(doc: etree._Element | etree._ElementTree) -> list[str]:
    """What is wrong with the MPD's structure ([] when nothing)."""
    root = doc.getroot() if isinstance(doc, etree._ElementTree) else doc
    out: list[str] = []
    if root.tag != f"{{{NS}}}MPD":
        return [f"root element is {root.tag}, not MPD in {NS}"]
    _check(root, "MPD", out)
    if not root.findall(f"{{{NS}}}Period"):
        out.append("MPD has no Period")
    return out


def _check(el: etree._Element, name: str, out: list[str]) -> None:
    rule = RULES.get(name)
    where = f"{name} (line {el.sourceline})"
    if rule is None:
        return  # an element we do not write (BaseURL text etc.)
    order, required, allowed = rule
    for attr, value in el.attrib.items():
        key = str(attr)
        if key.startswith("{http://www.w3.org/1999/xlink}"):
            key = "xlink:" + key.split("}", 1)[1]
        elif key.startswith("{"):
            continue  # other namespaces are allowed everywhere (anyAttribute ##other)
        if key not in allowed:
            out.append(f"{where}: attribute {key!r} not allowed")
            continue
        if key in _DURATIONS or (key == "duration" and name == "Period"):
            if not _DURATION.match(value):
                out.append(f"{where}: {key}={value!r} is not an xs:duration")
        elif key == "duration":
            if not _UINT.match(value):
                out.append(f"{where}: {key}={value!r} is not an unsigned integer")
        elif key in ("segmentAlignment", "subsegmentAlignment", "bitstreamSwitching"):
            if value not in _BOOL and not (key != "bitstreamSwitching" and _UINT.match(value)):
                out.append(f"{where}: {key}={value!r} is not a boolean")
        else:
            pattern = _TYPES.get(key)
            if pattern is not None and not pattern.match(value):
                out.append(f"{where}: {key}={value!r} is not an integer")
    for attr in required:
        if el.get(attr) is None:
            out.append(f"{where}: required attribute {attr!r} missing")
    position = 0
    counts: dict[str, int] = {}
    names = [n for n, _ in order]
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        q = etree.QName(child)
        if q.namespace != NS:
            if name == "ContentProtection":
                continue  # cenc:pssh, mspr:pro, dashif:Laurl: the schema's lax wildcard
            out.append(f"{where}: element {q.text} not allowed here")
            continue
        if q.localname not in names:
            out.append(f"{where}: element {q.localname} not allowed here")
            continue
        i = names.index(q.localname)
        if i < position:
            out.append(f"{where}: {q.localname} after {names[position]}: wrong order")
        position = max(position, i)
        counts[q.localname] = counts.get(q.localname, 0) + 1
        limit = order[i][1]
        if limit is not None and counts[q.localname] > limit:
            out.append(f"{where}: more than {limit} {q.localname}")
        _check(child, q.localname, out)


MpdCheck = Callable[[etree._Element | etree._ElementTree], None]  # the conftest fixture ``check_mpd``
