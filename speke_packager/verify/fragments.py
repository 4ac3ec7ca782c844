"""Classify the fragments of one rendition: encrypted, clear by design (clear lead), or broken.

A track fragment is clear by design when the sample entry it uses (tfhd
``sample_description_index``, else the trex default) is a clear one, or when an sbgp 'seig'
maps every sample to a CencSampleEncryptionInformationGroupEntry with ``isProtected`` 0
(ISO/IEC 23001-7 sample groups). Otherwise it must carry sample encryption data (senc, or the PIFF
uuid box). Clear fragments are allowed only as a leading run per track: a clear lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .boxes import FragmentFacts, Mp4Facts, TrafFacts

_LOCAL_GROUPS = 0x10000  # group_description_index above this: the traf's own sgpd


@dataclass(slots=True)
class FragmentSummary:
    """How many fragments are a clear lead and how many are encrypted; what is wrong."""

    total: int = 0
    clear_lead: int = 0
    encrypted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.encrypted > 0

    def detail(self) -> str:
        parts = []
        if self.clear_lead:
            parts.append(f"{self.clear_lead} clear lead")
        parts.append(f"{self.encrypted} with sample encryption data")
        text = f"{self.clear_lead + self.encrypted}/{self.total} fragments: " + ", ".join(parts)
        if self.total and not self.encrypted and not self.problems:
            text += "; no fragment is encrypted"
        if self.problems:
            more = len(self.problems) - 3
            text += "; " + "; ".join(self.problems[:3]) + (f"; and {more} more" if more > 0 else "")
        return text


def _seig_clear(traf: TrafFacts, init_seig: list[bool]) -> bool:
    """Every sample of the traf is mapped to a seig entry with isProtected 0."""
    if not traf.seig_runs or sum(n for _, n in traf.seig_runs) < traf.samples:
        return False
    for index, _ in traf.seig_runs:
        if index > _LOCAL_GROUPS:
            table, i = traf.local_seig, index - _LOCAL_GROUPS - 1
        else:
            table, i = tuple(init_seig), index - 1
        if not 0 <= i < len(table) or table[i]:
            return False
    return True


def _traf_state(facts: Mp4Facts, traf: TrafFacts) -> tuple[bool, str]:
    """(encrypted?, problem or '') for one track fragment."""
    entries = facts.entries.get(traf.track_id)
    if entries is None:
        return False, f"track {traf.track_id} is not in the init segment"
    sdi = traf.sample_description_index or facts.trex_sdi.get(traf.track_id, 1)
    if not 1 <= sdi <= len(entries):
        return False, (f"track {traf.track_id} uses sample description {sdi}, the init has "
                       f"{len(entries)}")
    if not entries[sdi - 1] or _seig_clear(traf, facts.init_seig.get(traf.track_id, [])):
        return False, ""
    if not traf.has_senc:
        return True, (f"track {traf.track_id} uses protected sample description {sdi} but "
                      "carries no sample encryption data (senc)")
    return True, ""


def _where(n: int, frag: FragmentFacts) -> str:
    return f"fragment {n}" + (f" ({frag.source})" if frag.source else "")


def classify_fragments(facts: Mp4Facts) -> FragmentSummary:
    """Walk the fragments in order; see the module docstring for the rules."""
    out = FragmentSummary(total=facts.fragments)
    seen_encrypted: set[int] = set()  # tracks that had an encrypted fragment already
    for n, frag in enumerate(facts.fragment_list, 1):
        encrypted = False
        bad = ""
        states = [(traf.track_id, *_traf_state(facts, traf)) for traf in frag.trafs]
        for tid, enc, problem in states:
            if problem:
                bad = bad or problem
            elif not enc and tid in seen_encrypted:
                bad = bad or f"clear fragment after encrypted ones (track {tid})"
            encrypted = encrypted or enc
        seen_encrypted.update(tid for tid, enc, _ in states if enc)
        if bad:
            out.problems.append(f"{_where(n, frag)}: {bad}")
        elif encrypted:
            out.encrypted += 1
        else:
            out.clear_lead += 1
    return out
