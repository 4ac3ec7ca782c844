"""XML attacks against every place that reads outside XML: the CPIX parser, the key server's
request parser (over real HTTP), the MPD reader, key-server CPD fragments (DASH writer and SPEKE
response validation) and PlayReady WRMHEADERs.

Each attack must be refused with a typed error, no file may be read (a canary file's secret
never shows up anywhere) and no network request may leave (a listener on 127.0.0.1 counts
connections). Per-test timeouts stand in for "fast": an expansion attack would blow them.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest
import requests

from speke_packager._xml import parse_xml
from speke_packager.constants import DrmSystem, Scheme
from speke_packager.drm.playready import PlayReadyError, parse_playready_object
from speke_packager.errors import CpixError, ManifestError, SpekePackagerError
from speke_packager.keys.cpix import parse_cpix
from speke_packager.keyserver import KeyServer
from speke_packager.manifests.dash import content_protections, parse_mpd
from speke_packager.model import DrmSignal

pytestmark = pytest.mark.timeout(60)

SECRET = "canary-7f3e9a1c-never-read-me"


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections (out-of-band XXE would hit it)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.hits += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n<!ENTITY y 'oob'>")
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._t.join()
        self.sock.close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()
    assert lst.hits == 0, "an XML parser made a network request"


@pytest.fixture()
def canary(tmp_path: Path) -> Path:
    p = tmp_path / "canary.txt"
    p.write_text(SECRET)
    return p


def _billion_laughs(root: str) -> bytes:
    ents = ['<!ENTITY a "lollollollollollollollollollol">']
    ents += [f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)]
    return f'<?xml version="1.0"?><!DOCTYPE r [{"".join(ents)}]><{root}>&j;</{root.split(maxsplit=1)[0]}>'.encode()


def attacks(canary: Path, port: int, root: str) -> dict[str, bytes]:
    """``root`` is the opening tag content (name + namespaces) of a document the target reads."""
    name = root.split(maxsplit=1)[0]
    url = f"http://127.0.0.1:{port}"
    file_url = canary.as_uri()
    long_comment = "<!--" + "x" * 10_000 + "-->"
    out = {
        "xxe-file": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{file_url}">]><{root}>&x;</{name}>',
        "xxe-http": f'<!DOCTYPE r [<!ENTITY x SYSTEM "{url}/x">]><{root}>&x;</{name}>',
        "external-dtd-http": f'<!DOCTYPE r SYSTEM "{url}/dtd"><{root}/>',
        "external-dtd-file": f'<!DOCTYPE r SYSTEM "{file_url}"><{root}/>',
        "external-dtd-after-long-comment":
            f'<?xml version="1.0"?>{long_comment}<!DOCTYPE r SYSTEM "{url}/late"><{root}/>',
        "file-dtd-after-long-comment": f'{long_comment}<!DOCTYPE r SYSTEM "{file_url}"><{root}/>',
        "parameter-entity": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p"> %p;]><{root}/>',
        "public-id": f'<!DOCTYPE r PUBLIC "-//X//Y" "{url}/pub"><{root}/>',
        "lowercase-doctype": f'<!doctype r SYSTEM "{url}/lc"><{root}/>',
        "xinclude": (f'<{root} xmlns:xi="http://www.w3.org/2001/XInclude">'
                     f'<xi:include href="{file_url}" parse="text"/></{name}>'),
        "undeclared-entity": f"<{root}>&x;</{name}>",
        "deep-nesting": "<a>" * 5000 + "</a>" * 5000,
    }
    data = {k: v.encode() for k, v in out.items()}
    data["billion-laughs"] = _billion_laughs(root)
    data["quadratic-blowup"] = (f'<!DOCTYPE r [<!ENTITY q "{"Q" * 50_000}">]><{root}>'
                                + "&q;" * 20_000 + f"</{name}>").encode()
    wide = f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r SYSTEM "{url}/w"><{root}/>'
    data["utf16-no-bom-dtd"] = wide.encode("utf-16-le")
    data["utf16-bom-dtd-after-comment"] = ("\ufeff" + long_comment + wide).encode("utf-16-le")
    data["utf32-dtd"] = wide.replace("UTF-16", "UTF-32").encode("utf-32")
    data["utf7-hidden-doctype"] = (b'<?xml version="1.0" encoding="UTF-7"?>'
                                   b"+ADw-+ACE-DOCTYPE r SYSTEM +ACI-" + file_url.encode()
                                   + b"+ACI-+AD4-+ADw-" + name.encode() + b"/+AD4-")
    data["too-large"] = f"<{root}>".encode() + b" " * (8 * 1024 * 1024 + 1) + f"</{name}>".encode()
    return data


CPIX_ROOT = 'cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="c1" version="2.3"'
MPD_ROOT = 'MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"'
NAMES = sorted(attacks(Path("/x"), 1, "r"))


def _no_secret(exc: BaseException | str) -> None:
    assert SECRET not in str(exc)


def _refused(fn: Callable[[bytes], object], doc: bytes, err: type[Exception], name: str = ""
             ) -> None:
    """Refused with ``err``; an XInclude may instead parse inert (never processed)."""
    if name == "xinclude":
        try:
            result = fn(doc)
        except err as exc:
            _no_secret(exc)
            return
        from lxml import etree
        text = etree.tostring(result) if isinstance(result, etree._Element) else repr(result)
        _no_secret(str(text))
        return
    with pytest.raises(err) as info:
        fn(doc)
    _no_secret(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_hardened_parser(name: str, canary: Path, listener: Listener) -> None:
    _refused(parse_xml, attacks(canary, listener.port, "r")[name], CpixError, name)


@pytest.mark.parametrize("name", NAMES)
def test_cpix_parser(name: str, canary: Path, listener: Listener) -> None:
    _refused(parse_cpix, attacks(canary, listener.port, CPIX_ROOT)[name], CpixError, name)


@pytest.mark.parametrize("name", NAMES)
def test_mpd_reader(name: str, canary: Path, listener: Listener) -> None:
    _refused(parse_mpd, attacks(canary, listener.port, MPD_ROOT)[name], ManifestError, name)


@pytest.mark.parametrize("name", NAMES)
def test_key_server_request(name: str, canary: Path, listener: Listener,
                            keyserver: KeyServer) -> None:
    doc = attacks(canary, listener.port, CPIX_ROOT)[name]
    for version in ("2.0", None):
        headers = {"X-Speke-Version": version} if version else {}
        r = requests.post(keyserver.speke_url, data=doc, headers=headers, timeout=30)
        if name == "too-large":  # over the server's max_body: refused before parsing
            assert r.status_code == 413
        elif name == "xinclude":  # inert: parsed, then refused as an incomplete request
            assert r.status_code in (400, 422), (r.status_code, r.text[:200])
        else:
            assert r.status_code == 400, (r.status_code, r.text[:200])
        _no_secret(r.text)
    # the server is still healthy afterwards
    assert requests.get(f"{keyserver.url}/healthz", timeout=10).status_code == 200


_FRAGMENTS = {
    "doctype-in-fragment": '<!DOCTYPE r SYSTEM "{url}/cpd"><cenc:pssh>AAAA</cenc:pssh>',
    "entity-in-fragment": "<cenc:pssh>&x;</cenc:pssh>",
    "xinclude-in-fragment": ('<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                             'href="{file}" parse="text"/>'),
    "unbalanced-fragment": "</w><w>",
}


@pytest.mark.parametrize("name", sorted(_FRAGMENTS))
def test_cpd_fragment_in_dash_writer(name: str, canary: Path, listener: Listener) -> None:
    cpd = _FRAGMENTS[name].format(url=f"http://127.0.0.1:{listener.port}", file=canary.as_uri())
    signal = DrmSignal(drm=DrmSystem.WIDEVINE, system_id=DrmSystem.WIDEVINE.system_id,
                       content_protection_data=cpd)
    try:
        elements = content_protections(UUID(int=1), Scheme.CENC, [signal])
    except SpekePackagerError as exc:
        _no_secret(exc)
        return
    from lxml import etree
    text = b"".join(etree.tostring(e) for e in elements).decode()
    _no_secret(text)
    assert name == "xinclude-in-fragment", f"{name} was accepted: {text[:200]}"


def _pro(header_xml: str) -> bytes:
    record = header_xml.encode("utf-16-le")
    body = struct.pack("<HHH", 1, 1, len(record)) + record
    return struct.pack("<I", 4 + len(body)) + body


@pytest.mark.parametrize("name", ["xxe-file", "external-dtd-http", "billion-laughs",
                                  "file-dtd-after-long-comment", "parameter-entity"])
def test_playready_header(name: str, canary: Path, listener: Listener) -> None:
    root = 'WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader" version="4.0.0.0"'
    doc = attacks(canary, listener.port, root)[name].decode()
    _refused(parse_playready_object, _pro(doc), PlayReadyError)


def test_controls_parse(canary: Path) -> None:
    """Controls: the same roots without the attack parse, so refusals above are the attack's."""
    assert parse_xml(f"<{CPIX_ROOT}/>".encode()).get("contentId") == "c1"
    assert parse_mpd(f"<{MPD_ROOT}/>".encode()) is not None
    assert parse_xml(("\ufeff<?xml version='1.0' encoding='UTF-16'?><r a='1'/>")
                     .encode("utf-16-le")).get("a") == "1"
    assert canary.read_text() == SECRET


@pytest.mark.parametrize("target", ["parse_xml", "cpix", "mpd"])
def test_huge_attribute_refused(target: str) -> None:
    root = {"parse_xml": "r", "cpix": CPIX_ROOT, "mpd": MPD_ROOT}[target]
    doc = f'<{root} huge="'.encode() + b"A" * (2 << 20) + b'"/>'
    fn, err = {"parse_xml": (parse_xml, CpixError), "cpix": (parse_cpix, CpixError),
               "mpd": (parse_mpd, ManifestError)}[target]
    with pytest.raises(err, match="attribute huge"):
        fn(doc)


def test_many_large_attributes_below_limit_parse() -> None:
    """Control: long but sane attributes (and big documents under 8 MiB) still parse."""
    doc = b"<r>" + b"".join(b'<a v="' + b"x" * 100_000 + b'"/>' for _ in range(30)) + b"</r>"
    assert len(parse_xml(doc)) == 30


def test_naive_parser_would_leak(canary: Path, listener: Listener) -> None:
    """Negative control: an unhardened lxml parser really reads the canary with these inputs,
    so the refusals above are meaningful."""
    from lxml import etree
    naive = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=True)
    doc = attacks(canary, listener.port, "r")["xxe-file"]
    assert SECRET in etree.tostring(etree.fromstring(doc, naive)).decode()


class FifoTrap:
    """A named pipe whose opening by anyone else is recorded (a file read by the parser)."""

    def __init__(self, path: Path) -> None:
        import os
        os.mkfifo(path)
        self.path = path
        self.opened = False
        self._closing = False
        self._t = threading.Thread(target=self._wait, daemon=True)
        self._t.start()

    def _wait(self) -> None:
        with open(self.path, "wb") as fh:  # blocks until a reader opens the pipe
            if not self._closing:
                self.opened = True
            fh.write(SECRET.encode())

    def close(self) -> None:
        import os
        self._closing = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # releases the writer
        self._t.join(5)
        os.close(fd)


_FILE_ATTACKS = ["xxe-file", "external-dtd-file", "file-dtd-after-long-comment"]


@pytest.mark.parametrize("target", ["parse_xml", "cpix", "mpd", "playready"])
@pytest.mark.parametrize("name", _FILE_ATTACKS)
def test_no_file_is_opened(name: str, target: str, tmp_path: Path, listener: Listener) -> None:
    trap = FifoTrap(tmp_path / "trap")
    try:
        root = {"parse_xml": "r", "cpix": CPIX_ROOT, "mpd": MPD_ROOT, "playready":
                'WRMHEADER xmlns="http://schemas.microsoft.com/DRM/2007/03/PlayReadyHeader"'}[target]
        doc = attacks(trap.path, listener.port, root)[name]
        fn: Callable[[bytes], object] = {"parse_xml": parse_xml, "cpix": parse_cpix,
                                         "mpd": parse_mpd,
                                         "playready": lambda d: parse_playready_object(
                                             _pro(d.decode()))}[target]
        with pytest.raises(SpekePackagerError):
            fn(doc)
    finally:
        trap.close()
    assert not trap.opened, "the parser opened a local file named by the document"


@pytest.mark.parametrize("name", ["doctype-in-fragment", "entity-in-fragment", "unbalanced-fragment"])
def test_cpd_fragment_in_speke_validation(name: str, tmp_path: Path, listener: Listener) -> None:
    """The SPEKE client checks ContentProtectionData against PSSH; a hostile fragment there is a
    CpixValidationError (module-private entry point: the public path needs a hostile server)."""
    from speke_packager.errors import CpixValidationError
    from speke_packager.keys.drm_signals import cpd_pssh
    trap = FifoTrap(tmp_path / "trap")
    try:
        cpd = _FRAGMENTS[name].format(url=f"http://127.0.0.1:{listener.port}",
                                      file=trap.path.as_uri())
        cpd = cpd.replace(f"http://127.0.0.1:{listener.port}/cpd", trap.path.as_uri())
        with pytest.raises(CpixValidationError) as info:
            cpd_pssh(cpd, "00000000-0000-0000-0000-000000000001")
        assert info.value.check == "cpd"
    finally:
        trap.close()
    assert not trap.opened
