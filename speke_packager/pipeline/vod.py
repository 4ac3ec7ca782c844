"""``encrypt_vod``: a clear HLS/DASH package or a media file in, an encrypted package out.

Stages: check the input and options, get the keys, describe a media file as a clear CMAF
package (the native fragmenter for MP4/MOV with cenc/cbcs, whose media segments are made only
when they are encrypted, :mod:`.native`; else ffmpeg segments it, stream copy), read the
manifests and probe every init section / first TS segment for its tracks, select keys by the
tracks' real properties, encrypt all segments on a thread pool, write manifests with the DRM
signaling, and publish the folder atomically (an error or Ctrl-C leaves no output, or the
earlier output intact). The input is only read.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .._io import AtomicDirectory, input_path, open_input
from ..constants import Scheme
from ..errors import UnsupportedMediaError, UsageError
from ..model import KeySet
from ..storage import is_s3
from .contexts import KeyChoice
from .hls_job import Contexts, HlsJob
from .keysource import RawKeys, SpekeKeys
from .options import KeySource, OutputFormat, TrackSummary, VodOptions, VodResult
from .plan import Generated, Piece, Plan, execute
from .remote import RemotePlan, RemoteRun, remote_precheck
from .segmenter import check_tools, segment_media, sniff_kind

log = logging.getLogger(__name__)

_TS_SCHEMES = (Scheme.AES_128, Scheme.SAMPLE_AES)


def input_kind(path: Path) -> str:
    """'hls', 'dash' or 'media' from the input's suffix (then its first bytes)."""

    def head() -> bytes:
        with path.open("rb") as fh:
            return fh.read(512)

    return sniff_kind(path.name, head, str(path))


def default_format(kind: str, scheme: Scheme) -> OutputFormat:
    """As the input; for a media file both (HLS only for the HLS-only TS schemes)."""
    if kind == "hls":
        return OutputFormat.HLS
    if kind == "dash":
        return OutputFormat.DASH
    return OutputFormat.HLS if scheme in _TS_SCHEMES else OutputFormat.BOTH


def _check(options: VodOptions, kind: str, source: object) -> OutputFormat:
    src = Path(options.input)
    fmt = options.format or default_format(kind, options.scheme)
    if isinstance(source, (RawKeys, SpekeKeys)):
        source.check(fmt, options.scheme)
    if kind == "hls" and fmt is not OutputFormat.HLS:
        raise UsageError("an HLS package can only be encrypted to HLS; give the media file "
                         "to get DASH too")
    if kind == "dash" and fmt is not OutputFormat.DASH:
        raise UsageError("a DASH package can only be encrypted to DASH; give the media file "
                         "to get HLS too")
    if fmt.dash and options.scheme in _TS_SCHEMES:
        raise UnsupportedMediaError(
            f"DASH needs cenc or cbcs; {options.scheme.value} is HLS-only "
            "(use --format hls, or --scheme cbcs for HLS + DASH)")
    if options.segment_duration <= 0:
        raise UsageError("--segment-duration must be positive")
    if options.clear_lead < 0:
        raise UsageError("--clear-lead cannot be negative")
    if options.single_file and options.clear_lead > 0 and fmt.dash:
        raise UsageError("--clear-lead with --single-file works for HLS only (--format hls): "
                         "a DASH SegmentBase rendition has one protection for the whole file")
    if options.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if options.iv is not None and len(options.iv) != 16:
        raise UsageError("--iv must be 16 bytes (32 hex digits)")
    out = Path(options.output).resolve()
    folder = input_path(src.parent, "")
    if out == folder or out in folder.parents:
        raise UsageError(f"the output folder {options.output} holds the input; choose another "
                         "folder (the input is never modified)")
    return fmt


def use_native(options: VodOptions, kind: str) -> bool:
    """True when the native fragmenter segments the media file (see ``VodOptions.segmenter``);
    a ``"native"`` request it cannot serve is a :class:`UsageError`."""
    choice = options.segmenter
    if choice not in (None, "native", "ffmpeg"):
        raise UsageError(f"--segmenter must be native or ffmpeg, not {choice!r}")
    if options.single_file and kind != "media":
        raise UsageError("--single-file applies to a media-file input (a package keeps its "
                         "own layout)")
    if options.single_file and choice == "ffmpeg":
        raise UsageError("--single-file needs the native segmenter (MP4/MOV input, cenc or "
                         "cbcs); it cannot be combined with --segmenter ffmpeg")
    if kind != "media" or choice == "ffmpeg":
        return False
    # (imported here: the fragmenter and the MP4 code are not loaded for a package input)
    from .native import NATIVE_SUFFIXES

    fits = Path(options.input).suffix.lower() in NATIVE_SUFFIXES
    if options.single_file and not (fits and options.scheme not in _TS_SCHEMES):
        raise UsageError(f"--single-file needs an MP4/MOV input "
                         f"({', '.join(sorted(NATIVE_SUFFIXES))}) and cenc or cbcs")
    if choice == "native":
        if not fits:
            raise UsageError(f"the native segmenter reads {', '.join(sorted(NATIVE_SUFFIXES))} "
                             "files; use --segmenter ffmpeg for this input")
        if options.scheme in _TS_SCHEMES:
            raise UsageError(f"the native segmenter writes CMAF (cenc, cbcs); "
                             f"{options.scheme.value} needs MPEG-TS: use --segmenter ffmpeg")
    return fits and options.scheme not in _TS_SCHEMES


def _check_output_holds_no_input(plan: Plan, output: Path) -> None:
    """The output folder (replaced by ``--force``) may not contain any file the input uses.

    Checked on resolved paths, after every manifest was read and every segment registered, and
    before anything is written: the playlists / MPD, init sections and segments (the folder of
    the input and everything above it are refused earlier). An output folder inside the
    package folder is fine when no input file lives under it."""
    out = output.resolve()
    for rel in sorted(plan.opened | {p.rel for p in plan.pieces.values()}):
        real = input_path(plan.src_root, rel)
        if real == out or out in real.parents:
            raise UsageError(f"the output folder {output} holds the input file {rel}; choose "
                             "another folder (the input is never modified)")


def check_vod(options: VodOptions, key_source: RawKeys | SpekeKeys | KeySource | KeySet
              ) -> tuple[str, OutputFormat]:
    """The checks :func:`encrypt_vod` makes before it fetches a key or writes a byte: the
    input (a regular file; its kind), the options, the output format against the input and the
    scheme, the DRM systems of a :class:`RawKeys` / :class:`SpekeKeys` source, the output
    folder against the input. Returns (input kind: 'hls', 'dash' or 'media', output format).
    ``encrypt-batch`` runs it for every asset up front, on the coordinator. An ``s3://``
    input is checked with a HEAD and (when its suffix does not tell) one small ranged read."""
    kind: str | None = None
    if is_s3(options.input) or is_s3(options.output):
        options, kind = remote_precheck(options)
    if kind is not None:
        fmt = _check(options, kind, key_source)
        use_native(options, kind)
        return kind, fmt
    src = Path(options.input)
    if not src.exists():
        raise UsageError(f"input {src} does not exist")
    if not src.is_file():
        raise UsageError(f"input {src} is not a file (give the playlist, MPD or media file)")
    kind = input_kind(src)
    # a regular file, never a FIFO or device; a playlist / MPD inside its package folder (a
    # media file named on the command line may be a link to anywhere)
    top = input_path(src.parent, src.name) if kind == "media" else src
    os.close(open_input(top.parent, top.name, what="input"))
    fmt = _check(options, kind, key_source)
    use_native(options, kind)  # a --segmenter the input cannot take: refused here
    return kind, fmt


def encrypt_vod(options: VodOptions,
                key_source: RawKeys | SpekeKeys | KeySource | KeySet) -> VodResult:
    """Encrypt ``options.input`` into ``options.output`` with keys from ``key_source``.

    Every rule on the options and keys is checked before anything is written or fetched
    (:class:`~speke_packager.errors.UsageError` and friends, one line each): the input, the
    output format against the input and the scheme, the DRM systems a :class:`RawKeys` or
    :class:`SpekeKeys` source would signal, the numbers, the output folder.

    ``options.input`` / ``options.output`` may be ``s3://bucket/key`` strings (see
    :mod:`.remote`): the input is read and the package published through object storage, with
    ``options.storage`` (endpoint, region...) and botocore's credential chain."""
    if is_s3(options.input) or is_s3(options.output):
        def precheck(local: VodOptions, kind: str) -> None:
            _check(local, kind, key_source)

        with RemoteRun(options, precheck) as remote:
            return remote.publish(_encrypt(remote.local, key_source, remote.plan_factory,
                                           remote.started))
    return _encrypt(options, key_source, Plan, None)


def _encrypt(options: VodOptions, key_source: RawKeys | SpekeKeys | KeySource | KeySet,
             plan_factory: Callable[[Path], Plan],
             started: Callable[[Path], None] | None) -> VodResult:
    src = Path(options.input)
    kind, fmt = check_vod(options, key_source)
    top = input_path(src.parent, src.name) if kind == "media" else src
    native = use_native(options, kind)
    if kind == "media" and not native:
        check_tools()
    with AtomicDirectory(Path(options.output), force=options.force) as out:
        if started is not None:
            started(out.path)
        keyset = _keys(key_source, fmt, options.scheme)
        if not keyset.entries:
            raise UsageError("the key set is empty")
        if native:
            from .native import NativePackage, fragment_media

            with tempfile.TemporaryDirectory(prefix=".speke-segments-",
                                             dir=out.path.parent) as work:
                npkg: NativePackage = fragment_media(top, Path(work),
                                                     seconds=options.segment_duration,
                                                     hls=fmt.hls, dash=fmt.dash,
                                                     single_file=options.single_file)
                try:
                    result = _run(options, keyset, plan_factory(Path(work)),
                                  hls_rel="master.m3u8" if fmt.hls else None,
                                  mpd_rel="manifest.mpd" if fmt.dash else None,
                                  out_dir=out.path, fmt=fmt, generated=npkg.generated,
                                  pieces=npkg.index_pieces())
                finally:
                    npkg.close()
        elif kind == "media":
            with tempfile.TemporaryDirectory(prefix=".speke-segments-",
                                             dir=out.path.parent) as work:
                wd = Path(work)
                ts = options.scheme in _TS_SCHEMES
                pkg = segment_media(src, wd, ts=ts, seconds=options.segment_duration,
                                    hls=fmt.hls)
                result = _run(options, keyset, plan_factory(wd),
                              hls_rel="master.m3u8" if fmt.hls else None,
                              mpd_rel="manifest.mpd" if fmt.dash and pkg.mpd else None,
                              out_dir=out.path, fmt=fmt)
        else:
            result = _run(options, keyset, plan_factory(input_path(src.parent, "")),
                          hls_rel=src.name if kind == "hls" else None,
                          mpd_rel=src.name if kind == "dash" else None, out_dir=out.path,
                          fmt=fmt)
        if options.before_publish is not None:
            options.before_publish(out.path)
        final = out.commit()
    return VodResult(output=final, scheme=result.scheme, format=fmt, manifests=result.manifests,
                     tracks=result.tracks, segments=result.segments, bytes_in=result.bytes_in,
                     bytes_out=result.bytes_out, warnings=result.warnings)


def _keys(source: RawKeys | SpekeKeys | KeySource | KeySet, fmt: OutputFormat,
          scheme: Scheme) -> KeySet:
    if isinstance(source, KeySet):
        return source
    if isinstance(source, SpekeKeys):
        return source.fetch(fmt, scheme)
    return source(scheme)


def _run(options: VodOptions, keyset: KeySet, plan: Plan, *, hls_rel: str | None,
         mpd_rel: str | None, out_dir: Path, fmt: OutputFormat,
         generated: Mapping[str, Generated] | None = None,
         pieces: Sequence[Piece] = ()) -> VodResult:
    plan.generated.update(generated or {})
    for p in pieces:  # (a native single file's sidx: whichever manifests read the file)
        plan.add(p)
    choice = KeyChoice(keyset=keyset, scheme=options.scheme, explicit_iv=options.iv,
                       iv_source=options.iv_source, key_uri=options.key_uri,
                       clear_lead=options.clear_lead > 0)
    contexts = Contexts(plan, choice)
    hls = HlsJob(plan, contexts, hls_rel, options.clear_lead) if hls_rel else None
    dsh = None
    if mpd_rel:
        from .dash_job import DashJob  # (lxml and the MPD writer: not needed for HLS)

        dsh = DashJob(plan, contexts, mpd_rel, options.clear_lead, options.clearkey_license_url)
    for job in (hls, dsh):
        if job is not None:
            job.prepare()
            job.check_signaling()
    _check_output_holds_no_input(plan, Path(options.output))
    tracks: list[TrackSummary] = [*(hls.tracks if hls else []), *(dsh.tracks if dsh else [])]
    if not any(t.kid for t in tracks):
        raise UsageError("no track of the input matches any key; nothing would be encrypted")
    progress: Callable[[int, int], None] | None = options.progress
    if isinstance(plan, RemotePlan):  # an s3:// package: its segments, several at a time
        plan.prefetch(p.rel for p in plan.pieces.values())
    execute(plan, out_dir, jobs=options.jobs, progress=progress)
    manifests: list[str] = []
    if hls is not None:
        for rel, text in hls.render(out_dir).items():
            _write(out_dir / rel, text.encode("utf-8"))
            manifests.append(rel)
    if dsh is not None:
        for rel, data in dsh.render().items():
            _write(out_dir / rel, data)
            manifests.append(rel)
    return VodResult(output=out_dir, scheme=options.scheme, format=fmt,
                     manifests=tuple(manifests), tracks=tuple(tracks),
                     segments=len(plan.pieces), bytes_in=plan.bytes_in,
                     bytes_out=plan.bytes_out,
                     warnings=tuple(hls.warnings if hls else ()))


def _write(path: Path, data: bytes) -> None:
    from ..errors import OutputError

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
