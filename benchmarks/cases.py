"""The measured cases: our segment API (1 core and a process pool), ``encrypt-vod`` and Shaka.

Every case runs in a child process, waited for with ``os.wait4`` so its peak RSS (``ru_maxrss``:
the largest of the child and of the processes it waited for) is its own. Each case runs ``runs``
times; the table reports the median.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .assets import AssetSet
from .keys import BenchKeys
from .shaka import shaka_command
from .verify import verify_output

SCHEMES = ("cenc", "cbcs", "sample-aes", "aes-128")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    """A finished child process."""

    returncode: int
    wall: float
    maxrss_kb: int
    stdout: str
    stderr: str
    cpu_seconds: float | None = None  # user + system of the child and its children


GNU_TIME = "/usr/bin/time"


def run_measured(cmd: list[str], *, timeout: float = 3600.0, env: dict[str, str] | None = None
                 ) -> Proc:
    """Run ``cmd``; wall time, exit code and peak RSS (KiB) of the child and its children.

    The child is started through GNU ``time -v`` when it is installed: Linux carries the peak RSS
    of a process over ``fork`` + ``exec``, so a child forked straight from this (large) Python
    process would report at least our own peak. ``time`` is tiny, so its child starts clean.
    Without it, ``os.wait4`` is used and the figure is an upper bound."""
    use_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".time") as tfile:
        argv = [GNU_TIME, "-v", "-o", tfile.name, *cmd] if use_time else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                             cwd=ROOT, start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:  # Ctrl-C: the child has its own session, so stop it ourselves
            os.killpg(p.pid, signal.SIGKILL)
            os.waitpid(p.pid, 0)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        maxrss = usage.ru_maxrss
        cpu: float | None = None
        if use_time:
            report = tfile.read()
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
            if m:
                maxrss = int(m.group(1))
            times = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", report)
            if len(times) == 2:
                cpu = float(times[0]) + float(times[1])
        out.seek(0)
        err.seek(0)
        return Proc(p.returncode, wall, maxrss, out.read().decode(errors="replace"),
                    err.read().decode(errors="replace"), cpu)


@dataclass
class CaseResult:
    """All runs of one (tool, scheme) case."""

    tool: str  # one of benchmarks.main.TOOLS
    scheme: str
    media_bytes: int
    status: str = "ok"  # "ok" | "unavailable" | "error"
    note: str = ""
    seconds: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)  # CPU seconds / wall seconds of the process
    cpu: list[float] = field(default_factory=list)  # CPU seconds (user + system) of each run
    extra: dict[str, object] = field(default_factory=dict)

    def add(self, seconds: float, p: Proc) -> None:
        """One run: its timed seconds and the process's peak RSS and CPU use."""
        self.seconds.append(seconds)
        self.rss_kb.append(p.maxrss_kb)
        if p.cpu_seconds is not None and p.wall > 0:
            self.cores.append(p.cpu_seconds / p.wall)
            self.cpu.append(p.cpu_seconds)

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def mbps(self) -> float | None:
        s = self.median_seconds
        return self.media_bytes / s / 1e6 if s else None

    @property
    def peak_rss_mb(self) -> float | None:
        return max(self.rss_kb) / 1024 if self.rss_kb else None

    def to_json(self) -> dict[str, object]:
        return {"tool": self.tool, "scheme": self.scheme, "status": self.status,
                "note": self.note, "media_bytes": self.media_bytes, "seconds": self.seconds,
                "median_seconds": self.median_seconds, "mb_per_s": self.mbps,
                "mb_per_s_min": (self.media_bytes / max(self.seconds) / 1e6
                                 if self.seconds and min(self.seconds) > 0 else None),
                "mb_per_s_max": (self.media_bytes / min(self.seconds) / 1e6
                                 if self.seconds and min(self.seconds) > 0 else None),
                "peak_rss_kb": self.rss_kb, "peak_rss_mb": self.peak_rss_mb,
                "cores_used": statistics.median(self.cores) if self.cores else None,
                "cpu_seconds": self.cpu,
                "median_cpu_seconds": statistics.median(self.cpu) if self.cpu else None,
                **self.extra}


def media_bytes(asset: AssetSet, scheme: str) -> int:
    return asset.cmaf_bytes if scheme in ("cenc", "cbcs") else asset.ts_bytes


@dataclass
class Context:
    """What every case needs: the asset, the keys, a scratch directory, the run count."""

    asset: AssetSet
    keys: BenchKeys
    key_file: Path
    scratch: Path
    runs: int
    jobs: int
    packager: str | None
    log: bool = True
    verified: dict[str, str] = field(default_factory=dict)  # scheme -> result of verify_output

    def out_dir(self, name: str) -> Path:
        d = self.scratch / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    def say(self, text: str) -> None:
        if self.log:
            print(f"[bench] {text}", flush=True)


def warm_inputs(ctx: Context, scheme: str, tool: str) -> None:
    """Read every input file of the next timed run once, so that each tool starts with its
    input in the page cache: this VM reads cold files at 260-420 MB/s and its kernel reclaims
    idle page cache, so without this the tool that happens to run after a reclaim measures the
    disk. (Outputs go to the page cache for every tool alike; nothing is fsynced.)"""
    a = ctx.asset
    files: list[Path]
    if scheme in ("cenc", "cbcs"):
        if tool == "shaka-packager":
            files = [t.full for t in a.cmaf]
        elif tool in ("encrypt-vod-mp4", "shaka-packager-mp4"):
            files = [a.source]
        else:
            files = [p for t in a.cmaf for p in (t.init, *t.segments)]
    elif tool == "shaka-packager":
        files = [a.ts_full]
    elif tool in ("encrypt-vod-mp4", "shaka-packager-mp4"):
        files = [a.source]
    else:
        files = list(a.ts_segments)
    buf = bytearray(1 << 20)
    for f in files:
        with f.open("rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def _verify(ctx: Context, scheme: str, out: Path) -> str:
    video = next(t for t in ctx.asset.cmaf if t.kind == "video")
    return verify_output(scheme, ctx.keys, out, ctx.scratch / f"verify-{scheme}",
                         (video.init, video.segments[0]), ctx.asset.ts_segments[0])


def _worker_spec(ctx: Context, scheme: str, jobs: int, out: Path,
                 profile: Path | None = None, limit: int | None = None,
                 memory: bool = False, copy: bool = False) -> Path:
    spec = {"scheme": scheme, "jobs": jobs, "out": str(out), "keys": str(ctx.key_file),
            "memory": memory, "copy": copy,
            "asset_root": str(ctx.asset.root), "asset_spec": ctx.asset.spec.__dict__,
            "profile": str(profile) if profile else None, "limit_segments": limit}
    path = ctx.scratch / f"spec-{scheme}-{jobs}.json"
    path.write_text(json.dumps(spec))
    return path


def segment_api(ctx: Context, scheme: str, jobs: int, *, memory: bool = False,
                copy: bool = False) -> CaseResult:
    """Our encryptors in-process over every segment, in a fresh interpreter per run.

    ``memory``: time only the in-memory ``encrypt_segment`` calls (file reads and writes out).
    ``copy``: the same file loop without encryption (``file-copy``: this machine's I/O floor
    for the file-to-file cases)."""
    tool = ("segment-api-memory" if memory else "file-copy" if copy else
            "segment-api-1core" if jobs <= 1 else "segment-api-pool")
    res = CaseResult(tool, scheme, media_bytes(ctx.asset, scheme), extra={"jobs": jobs})
    for _ in range(ctx.runs):
        out = ctx.out_dir(f"{tool}-{scheme}")
        spec = _worker_spec(ctx, scheme, jobs, out, memory=memory, copy=copy)
        warm_inputs(ctx, scheme, tool)
        p = run_measured([sys.executable, "-m", "benchmarks.worker", str(spec)])
        if p.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            res.status, res.note = "error", _last_line(p.stderr)
            return res
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        if "unavailable" in doc:
            shutil.rmtree(out, ignore_errors=True)
            res.status, res.note = "unavailable", str(doc["unavailable"])
            return res
        if int(doc["bytes_out"]) < int(doc["bytes_in"]):
            shutil.rmtree(out, ignore_errors=True)
            res.status = "error"
            res.note = f"output ({doc['bytes_out']} B) smaller than input ({doc['bytes_in']} B)"
            return res
        if tool == "segment-api-1core" and not memory and scheme not in ctx.verified:
            ctx.verified[scheme] = _verify(ctx, scheme, out)
            ctx.say(f"verified {scheme} output with an independent decryptor: "
                    f"{ctx.verified[scheme]}")
        res.add(float(doc["seconds"]), p)
        if tool == "segment-api-1core" and scheme in ctx.verified:
            res.extra["verified"] = ctx.verified[scheme]
        shutil.rmtree(out, ignore_errors=True)
        res.extra.update(bytes_out=doc["bytes_out"], segments=doc["segments"],
                         total_rss_estimate_kb=doc["total_rss_estimate_kb"])
        ctx.say(f"{tool} {scheme} {res.media_bytes / doc['seconds'] / 1e6:.0f} MB/s")
    return res




@functools.cache
def encrypt_vod_available() -> str | None:
    """None if ``speke-packager encrypt-vod`` exists, else why not."""
    p = subprocess.run([sys.executable, "-m", "speke_packager", "encrypt-vod", "--help"],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    if p.returncode != 0:
        return "not available yet (speke-packager encrypt-vod: " + _last_line(p.stderr) + ")"
    return None


def _vod_input(ctx: Context, scheme: str, from_mp4: bool) -> tuple[Path, int, str]:
    """(input path, media bytes, output format) of an encrypt-vod case. From the MP4 the
    format is encrypt-vod's default, as a user runs it: HLS + DASH for cenc / cbcs (CMAF), HLS
    for the TS schemes."""
    if from_mp4:
        fmt = "hls+dash" if scheme in ("cenc", "cbcs") else "hls"
        return ctx.asset.source, ctx.asset.source.stat().st_size, fmt
    mp4_scheme = scheme in ("cenc", "cbcs")
    src = ctx.asset.root / ("cmaf/master.m3u8" if mp4_scheme else "ts/index.m3u8")
    return src, media_bytes(ctx.asset, scheme), "hls"  # an HLS package stays HLS


def _vod_command(ctx: Context, scheme: str, from_mp4: bool, out: Path) -> list[str]:
    src, _, fmt = _vod_input(ctx, scheme, from_mp4)
    k = ctx.keys
    if scheme in ("cenc", "cbcs"):
        lines = [f"video={k.video.kid.hex}:{k.video.key.hex()}",
                 f"audio={k.audio.kid.hex}:{k.audio.key.hex()}"]
        ivargs = ["--iv", k.cbcs_iv.hex()] if scheme == "cbcs" else []
    else:
        lines = [f"{k.ts.kid.hex}:{k.ts.key.hex()}"]
        ivargs = ["--iv", k.ts_iv.hex()]
    key_file = ctx.scratch / f"vod-keys-{scheme}.txt"  # 0600, like Shaka's flag file
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    keyargs = ["--key-file", str(key_file), *ivargs]
    # from the MP4: no --format (the default); an HLS output needs the key URI
    fmtargs = [] if from_mp4 else ["--format", fmt]
    return [sys.executable, "-m", "speke_packager", "encrypt-vod", str(src),
            "--output", str(out), "--scheme", scheme, *fmtargs, *keyargs,
            *(["--key-uri", "https://127.0.0.1/keys/{kid}"] if "hls" in fmt else []),
            "--jobs", str(ctx.jobs), "--quiet", "--force"]


def encrypt_vod(ctx: Context, scheme: str, *, from_mp4: bool = False) -> CaseResult:
    """The whole ``encrypt-vod`` CLI in a subprocess, wall time.

    Input: the clear HLS package Shaka Packager also gets (CMAF for cenc/cbcs, TS otherwise), or
    with ``from_mp4`` the progressive MP4 source, run as a user would (default options: HLS +
    DASH for cenc/cbcs; whatever segmenter encrypt-vod uses for an MP4)."""
    tool = "encrypt-vod-mp4" if from_mp4 else "encrypt-vod"
    src, nbytes, fmt = _vod_input(ctx, scheme, from_mp4)
    res = CaseResult(tool, scheme, nbytes, extra={"jobs": ctx.jobs, "format": fmt,
                                                  "input": src.name})
    why = encrypt_vod_available()
    if why:
        res.status, res.note = "unavailable", why
        return res
    for _ in range(ctx.runs):
        out = ctx.out_dir(f"{tool}-{scheme}")
        cmd = _vod_command(ctx, scheme, from_mp4, out)
        warm_inputs(ctx, scheme, tool)
        p = run_measured(cmd)
        shutil.rmtree(out, ignore_errors=True)
        if p.returncode != 0:
            res.status, res.note = "error", _scrub(_last_line(p.stderr), ctx.keys)
            return res
        res.add(p.wall, p)
        ctx.say(f"{tool} {scheme} {res.media_bytes / p.wall / 1e6:.0f} MB/s")
    return res


def _copy_command(ctx: Context, scheme: str, out: Path) -> list[str]:
    """``cp`` of the clear package encrypt-vod reads (playlists, init sections, segments; not
    Shaka's concatenated inputs) into ``out``. ``--reflink=never``: a real copy of every byte
    even on a file system that could share the blocks."""
    a = ctx.asset
    out.mkdir(parents=True)
    if scheme in ("cenc", "cbcs"):
        src = [str(t.init.parent) for t in a.cmaf] + [str(a.root / "cmaf" / "master.m3u8")]
    else:
        src = [str(p) for p in a.ts_segments] + [str(a.root / "ts" / "index.m3u8")]
    return ["cp", "-r", "--reflink=never", "-t", str(out), *src]


def copy_limit(ctx: Context, scheme: str) -> CaseResult:
    """``copy-limit``: a plain ``cp -r`` of the same clear package files, page cache warm, in
    the same round as every other tool: the physical limit of a tool that reads and writes every
    byte once (every tool's "x copy" divides by it)."""
    res = CaseResult("copy-limit", scheme, media_bytes(ctx.asset, scheme))
    if shutil.which("cp") is None:
        res.status, res.note = "unavailable", "cp not found"
        return res
    for _ in range(ctx.runs):
        out = ctx.out_dir(f"copy-limit-{scheme}")
        cmd = _copy_command(ctx, scheme, out)
        warm_inputs(ctx, scheme, "copy-limit")
        p = run_measured(cmd)
        shutil.rmtree(out, ignore_errors=True)
        if p.returncode != 0:
            res.status, res.note = "error", _last_line(p.stderr)
            return res
        res.add(p.wall, p)
        ctx.say(f"copy-limit {scheme} {res.media_bytes / p.wall / 1e6:.0f} MB/s")
    return res


def pyspy_encrypt_vod(ctx: Context, scheme: str, out: Path) -> str:
    """Sample one ``encrypt-vod`` run (all threads) with py-spy; top functions as text.

    py-spy sees the worker threads that cProfile misses. Its raw output names the process with
    its command line, keys included, so the raw file is scrubbed before anything is kept."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(pyspy, os.X_OK):
        return f"{scheme}: py-spy not installed (pip install py-spy)"
    if encrypt_vod_available():
        return f"{scheme}: encrypt-vod not available yet"
    work = ctx.out_dir(f"pyspy-{scheme}")
    raw = ctx.scratch / f"pyspy-{scheme}.raw"
    p = run_measured([pyspy, "record", "-r", "100", "-f", "raw", "-o", str(raw), "--",
                      *_vod_command(ctx, scheme, False, work)])
    shutil.rmtree(work, ignore_errors=True)
    if p.returncode != 0 or not raw.exists():
        return f"{scheme}: py-spy failed: {_scrub(_last_line(p.stderr), ctx.keys)}"
    text = _scrub(_collapse(raw.read_text()), ctx.keys)
    raw.unlink()
    (out / f"pyspy-encrypt-vod-{scheme}.txt").write_text(text)
    return text


def _collapse(raw: str, top: int = 20) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for ln in raw.splitlines():
        stack, _, n_text = ln.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    if not total:
        return "no samples"
    lines = [f"{total} samples (all threads)", "", "self:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines += ["", "inclusive (speke_packager):"]
    ours = [(f, n) for f, n in incl.items() if "speke_packager" in f]
    lines += [f"{n / total:6.1%}  {f}" for f, n in sorted(ours, key=lambda x: -x[1])[:top]]
    return "\n".join(lines) + "\n"


def shaka(ctx: Context, scheme: str, *, from_mp4: bool = False) -> CaseResult:
    """Shaka Packager with the same keys on the clear CMAF / TS (whole asset, wall time), or
    with ``from_mp4`` on the progressive MP4 source (the reference for encrypt-vod-mp4)."""
    tool = "shaka-packager-mp4" if from_mp4 else "shaka-packager"
    nbytes = ctx.asset.source.stat().st_size if from_mp4 else media_bytes(ctx.asset, scheme)
    res = CaseResult(tool, scheme, nbytes)
    if not ctx.packager:
        res.status, res.note = "unavailable", "Shaka Packager not found"
        return res
    for _ in range(ctx.runs):
        out = ctx.out_dir(f"{tool}-{scheme}")
        cmd = shaka_command(ctx.packager, ctx.asset, scheme, ctx.keys, out, from_mp4=from_mp4)
        warm_inputs(ctx, scheme, tool)
        p = run_measured(cmd)
        shutil.rmtree(out, ignore_errors=True)
        if p.returncode != 0:
            res.status, res.note = "error", _scrub(_last_line(p.stderr), ctx.keys)
            return res
        res.add(p.wall, p)
        ctx.say(f"{tool} {scheme} {res.media_bytes / p.wall / 1e6:.0f} MB/s")
    return res


def profile_segment_api(ctx: Context, scheme: str, out: Path, limit: int | None) -> str:
    """cProfile one single-core run of ``scheme``; returns the top functions as text."""
    import io
    import pstats

    prof = out / f"profile-{scheme}.pstats"
    work = ctx.out_dir(f"profile-{scheme}")
    spec = _worker_spec(ctx, scheme, 1, work, profile=prof, limit=limit)
    p = run_measured([sys.executable, "-m", "benchmarks.worker", str(spec)])
    shutil.rmtree(work, ignore_errors=True)
    if p.returncode != 0:
        return f"{scheme}: error: {_last_line(p.stderr)}"
    if "unavailable" in p.stdout:
        return f"{scheme}: {json.loads(p.stdout.strip().splitlines()[-1])['unavailable']}"
    buf = io.StringIO()
    st = pstats.Stats(str(prof), stream=buf)
    st.strip_dirs().sort_stats("tottime").print_stats(15)
    text = buf.getvalue()
    (out / f"profile-{scheme}.txt").write_text(text)
    return text


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _scrub(text: str, keys: BenchKeys) -> str:
    """Remove any key (hex) from a message before it reaches the table or the JSON."""
    for k in (keys.video, keys.audio, keys.ts):
        text = text.replace(k.key.hex(), "<key>").replace(k.key.hex().upper(), "<key>")
    return text
