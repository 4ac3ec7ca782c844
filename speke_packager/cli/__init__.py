"""Command-line interface: argparse -> typed options -> one library call.

Each sub-command lives in its own module exposing ``register(subparsers)``; the parser sets
``func`` on the namespace. Only :class:`~speke_packager.errors.SpekePackagerError` is caught and
turned into one line on stderr with a non-zero exit; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from ..errors import SpekePackagerError

# Sub-command modules, in help order. Each defines register(subparsers).
_COMMAND_MODULES = (
    "keys_cmd",  # keys, cpix
    "conformance_cmd",  # conformance
    "keyserver_cmd",  # keyserver
    "vod_cmd",  # encrypt-vod
    "live_cmd",  # encrypt-live
    "batch_cmd",  # encrypt-batch
    "verify_cmd",  # verify, serve
    "demo_cmd",  # demo
)

Handler = Callable[[argparse.Namespace], int]

log = logging.getLogger("speke_packager")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="speke-packager",
        description="SPEKE key acquisition, media encryption and DRM signaling for HLS and DASH.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="logging level (default: warning); logs never contain content keys",
    )
    parser.add_argument("--log-file", help="also write logs to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt: every
    ``except KeyboardInterrupt`` / ``finally`` cleanup (the temporary output folder, ffmpeg, the
    worker pool) runs for them too. The exit status is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise Terminated(signum)


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _setup_logging(level: str, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # urllib3 logs request lines (path and query: tokens) and botocore signed requests at DEBUG:
    # kept at WARNING whatever --log-level says (SECURITY.md, "What is logged").
    for name in ("urllib3", "botocore", "boto3", "s3transfer"):
        logging.getLogger(name).setLevel(max(logging.WARNING, getattr(logging, level.upper())))


def console_main() -> NoReturn:
    """The program (``speke-packager`` and ``python -m speke_packager``): :func:`main`, then
    exit. Before the interpreter shuts down, every object is frozen out of the garbage
    collector (``gc.freeze``): shutdown would otherwise walk the whole heap (numpy, the cipher
    library, every module) in its final collections, measured at 10-20 % of a short
    ``encrypt-vod`` run. Nothing is skipped: ``atexit`` handlers (log files) run and buffered
    files are flushed as usual; there is just no cycle left to collect in a process that ends."""
    code = main()
    import gc

    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_file)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    log.debug("speke-packager %s", args.command)  # (also proves a --log-file is written)
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _terminate) for s in _STOP_SIGNALS}
    try:
        return func(args)
    except SpekePackagerError as exc:
        print(f"speke-packager: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated as exc:
        print(f"speke-packager: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("speke-packager: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
