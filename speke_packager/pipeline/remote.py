"""``encrypt_vod`` with ``s3://`` input and/or output.

Input: a media file is streamed (ranged reads, bounded memory) to a local temporary file, since
ffmpeg cannot read ``s3://``. A package (playlist or MPD) is read through :class:`RemotePlan`:
each file the manifests name is fetched into a local cache the first time it is opened or
probed, and the segments are fetched several at a time before encryption starts, so the
encryption itself (forked worker processes included) reads local files as usual.

Output: the package is built in a local temporary folder, then published under the ``s3://``
prefix by :class:`~speke_packager.storage.Publication`: segments first, manifests last; on any
failure (or Ctrl-C) the objects written by this run are deleted again.

Local disk use: about the input (a package's or media file's bytes) plus the output; memory
stays bounded (one part per object in flight)."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ManifestError, ObjectNotFoundError, UsageError
from ..storage import (
    ObjectStore,
    Publication,
    S3Url,
    download_file,
    local_files,
    location,
    safe_rel,
)
from .options import VodOptions, VodResult
from .plan import Plan
from .segmenter import sniff_kind


class RemotePlan(Plan):
    """A :class:`Plan` whose input package lives under an ``s3://`` prefix: every file is
    fetched into ``src_root`` (a local cache) on first use, then read like a local file."""

    def __init__(self, cache: Path, prefix: S3Url, store: ObjectStore) -> None:
        super().__init__(cache)
        self.prefix = prefix.as_prefix()
        self.store = store
        self.fetched: set[str] = set()
        self.missing: set[str] = set()

    def _fetch(self, rel: str, what: str, width: int | None = None) -> bool:
        if rel in self.fetched:
            return True
        if rel in self.missing:
            return False
        name = safe_rel(rel, what=what)
        try:
            download_file(self.store, self.prefix.join(name), self.src_root / name, width=width)
        except ObjectNotFoundError:
            self.missing.add(rel)
            return False
        self.fetched.add(rel)
        return True

    def open(self, rel: str, *, what: str = "segment") -> int:
        if not self._fetch(rel, what):
            self.opened.add(rel)
            raise ManifestError(f"{what} {rel} is missing ({self.prefix.join(rel)})")
        return super().open(rel, what=what)

    def exists(self, rel: str, *, what: str = "segment") -> bool:
        return self._fetch(rel, what) and super().exists(rel, what=what)

    def prefetch(self, rels: Iterable[str]) -> None:
        """Fetch every file of ``rels`` not fetched yet, several at a time."""
        todo = sorted({r for r in rels if r not in self.fetched})
        if not todo:
            return
        width = self.store.options.concurrency
        with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="s3-get") as ex:
            futures = [ex.submit(self._fetch, rel, "segment", 1) for rel in todo]
            try:
                for rel, fut in zip(todo, futures, strict=True):
                    if not fut.result():
                        raise ManifestError(f"segment {rel} is missing "
                                            f"({self.prefix.join(rel)})")
            finally:
                for f in futures:
                    f.cancel()


def _remote_kind(store: ObjectStore, src: S3Url) -> str:
    return sniff_kind(src.name, lambda: store.get_range(src, 0, 512), str(src))


def _check_overlap(src: S3Url, dst: S3Url, package: bool) -> None:
    out = dst.as_prefix()
    if src.bucket != out.bucket:
        return
    folder = src.parent.key
    if src.key.startswith(out.key) or (package and folder.startswith(out.key)):
        raise UsageError(f"the output {dst} holds the input; choose another prefix (the "
                         "input is never modified)")
    if package and out.key.startswith(folder):
        raise UsageError(f"the output {dst} lies inside the input package's folder "
                         f"{src.parent}; choose a prefix outside it")


def remote_precheck(options: VodOptions) -> tuple[VodOptions, str | None]:
    """Without downloading anything (for a coordinator that checks many assets up front):
    HEAD of an ``s3://`` input (:class:`ObjectNotFoundError` when it is missing) and its kind
    (suffix, else its first bytes), the output prefix's rules. Returns the options with
    placeholder local paths for the remaining checks, and the input's kind (None for a local
    input, which the caller checks as usual)."""
    store = ObjectStore(options.storage)
    src, dst = location(options.input), location(options.output)
    stage = Path(tempfile.gettempdir()) / "speke-s3-precheck"
    kind: str | None = None
    local_in: Path | str = options.input
    if isinstance(src, S3Url):
        try:
            store.head(src)
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(f"input {src} does not exist ({exc.code})",
                                      url=str(src), code=exc.code) from None
        kind = _remote_kind(store, src)
        local_in = stage / "input" / src.name
    local_out: Path | str = options.output
    if isinstance(dst, S3Url):
        if not dst.key.strip("/"):
            raise UsageError(f"the output {dst} is a whole bucket; give a prefix "
                             "(s3://bucket/folder)")
        if isinstance(src, S3Url):
            _check_overlap(src, dst, kind != "media")
        local_out = stage / "output"
    return dataclasses.replace(options, input=local_in, output=local_out), kind


class RemoteRun:
    """Stages an ``encrypt_vod`` run whose input and/or output is in object storage:
    ``local`` are the options to run locally, :meth:`plan_factory` builds the input's plan,
    :meth:`started` learns the local output folder, :meth:`publish` uploads the rest of the
    result (segments finished earlier are already going up during encryption). A context
    manager: on an exception every object of the run is removed; the temporary folder goes."""

    def __init__(self, options: VodOptions,
                 precheck: Callable[[VodOptions, str], object] | None = None) -> None:
        self.options = options
        self._precheck = precheck
        self.store = ObjectStore(options.storage)
        self.src = location(options.input)
        self.dst = location(options.output)
        self._factory: Callable[[Path], Plan] = Plan
        self.publication: Publication | None = None
        self._plan: Plan | None = None
        self._out_fd: int | None = None
        self._seen = 0
        self.hook_files: list[str] = []  # written by options.before_publish: published last
        self._tmp = Path(tempfile.mkdtemp(prefix="speke-s3-"))
        try:
            self.local = self._stage()
        except BaseException:
            self.close()
            raise

    def _stage(self) -> VodOptions:
        src, dst = self.src, self.dst
        local_in: Path
        if isinstance(src, S3Url):
            try:
                self.store.head(src)
            except ObjectNotFoundError as exc:
                raise ObjectNotFoundError(f"input {src} does not exist ({exc.code})",
                                          url=str(src), code=exc.code) from None
            kind = _remote_kind(self.store, src)
            if isinstance(dst, S3Url):
                _check_overlap(src, dst, kind != "media")
            cache = self._tmp / "input"
            if self._precheck is not None:  # every rule on the options before the download
                self._precheck(dataclasses.replace(
                    self.options, input=cache / src.name, output=self._tmp / "output"), kind)
            if kind == "media":
                local_in = cache / src.name
            else:
                prefix, store, name = src.parent, self.store, src.name

                def factory(root: Path) -> Plan:
                    plan = RemotePlan(root, prefix, store)
                    plan.fetched.add(name)  # the manifest, fetched below
                    return plan

                self._factory = factory
                local_in = cache / src.name
            download_file(self.store, src, local_in)
        else:
            local_in = Path(src)
        local_out: Path
        if isinstance(dst, S3Url):
            if not dst.key.strip("/"):
                raise UsageError(f"the output {dst} is a whole bucket; give a prefix "
                                 "(s3://bucket/folder)")
            self.publication = Publication(self.store, dst, force=self.options.force)
            self.publication.begin()
            local_out = self._tmp / "output"
        else:
            local_out = Path(dst)
        hook = self._before_publish if self.options.before_publish is not None else None
        return dataclasses.replace(self.options, input=local_in, output=local_out,
                                   progress=self._progress, before_publish=hook)

    def _before_publish(self, folder: Path) -> None:
        """The caller's hook; the files it adds (e.g. a completion manifest) are noted to be
        published after everything else, the manifests included."""
        assert self.options.before_publish is not None
        before = set(local_files(folder))
        self.options.before_publish(folder)
        self.hook_files = [r for r in local_files(folder) if r not in before]

    def plan_factory(self, root: Path) -> Plan:
        """The input's plan (a :class:`RemotePlan` for an ``s3://`` package); kept so that
        finished segments can be uploaded while the others are encrypted."""
        self._plan = self._factory(root)
        self._seen = 0
        return self._plan

    def started(self, out_dir: Path) -> None:
        """The local folder the package is being built in (renamed when complete: early
        uploads open their files relative to a descriptor of it, which follows the rename)."""
        if self.publication is not None and self._out_fd is None:
            self._out_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _progress(self, done: int, total: int) -> None:
        if self.options.progress is not None:
            self.options.progress(done, total)
        plan, pub, out = self._plan, self.publication, self._out_fd
        if plan is None or pub is None or out is None or len(plan.placed) == self._seen:
            return
        # a whole-file piece is final once placed (byte-range files are finished later and
        # go up with the manifests' pass): upload it now, while the others are encrypted
        for rel, offset, _ in itertools.islice(plan.placed, self._seen, None):
            if offset is None:
                pub.upload_early(out, rel)
        self._seen = len(plan.placed)

    def publish(self, result: VodResult) -> VodResult:
        """Upload the package when the output is an ``s3://`` prefix: segments (in parallel),
        then ``result.manifests`` in order, then any other file of the folder that the run did
        not make as a segment (e.g. a playlist written outside ``result.manifests``), then the
        files the caller's ``before_publish`` hook wrote (e.g. a completion manifest), one by
        one: when the last of them is visible, the whole package is. The result then names the
        prefix."""
        if self.publication is None:
            return result
        out = Path(result.output)
        made = {p.rel for p in self._plan.pieces.values()} if self._plan is not None else None
        hook = [r for r in self.hook_files if r not in set(result.manifests)]
        known = set(result.manifests) | set(hook) | (made or set())
        extra = [] if made is None else [r for r in local_files(out) if r not in known]
        self.publication.upload_tree(out, [*result.manifests, *extra, *hook])
        self.publication.remove_stale()
        return dataclasses.replace(result, output=str(self.publication.dest))

    def close(self) -> None:
        if self._out_fd is not None:
            os.close(self._out_fd)
            self._out_fd = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> RemoteRun:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None and self.publication is not None:
                self.publication.abort(exc)  # early uploads of a run that failed
        finally:
            self.close()
