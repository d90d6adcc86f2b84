"""The HEC client trusts only the CAs that can anchor HEC's chain, and every CA on any doubt.

A loopback TLS server presents a real chain (server certificate, intermediate CA) made by the
openssl CLI; the client's bundle holds the system's CAs and the root, as a production endpoint's
would (ext/sender/trust.py).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.local.hec.certificates import ca_chain
from ext.sender import trust
from ext.sender.hec import HecClient, Verdict, _Trust
from tests.integration.test_hec_client import Script, config, serving

pytestmark = pytest.mark.integration

SYSTEM_BUNDLE = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """Two unrelated CAs, each with an intermediate and a server certificate for 127.0.0.1;
    "others": certificates of no use to HEC's chain, enough for a bundle worth choosing from."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    folder = tmp_path_factory.mktemp("pki")
    made = {name: ca_chain(folder / name, name) for name in ("first", "second")}
    others = b""
    for n in range(trust.LOAD_WHOLE_MAX):
        cert = folder / f"other{n}.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        f"/CN=other {n}", "-keyout", str(folder / f"other{n}-key.pem"),
                        "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
        others += cert.read_bytes()
    (folder / "others.pem").write_bytes(others)
    return made


def bundle(folder: Path, *roots: Path) -> Path:
    """The system's CAs (if any), certificates of no use to HEC's chain and `roots`: one PEM."""
    system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.is_file() else b""
    others = (roots[0].parents[1] / "others.pem").read_bytes() if roots else b""
    path = folder / "bundle.pem"
    path.write_bytes(system + others + b"".join(root.read_bytes() for root in roots))
    return path


@pytest.fixture
def chain_server(pki: dict[str, tuple[Path, Path, Path]]) -> Iterator[tuple[str, Script,
                                                                            ssl.SSLContext]]:
    """A server presenting the first CA's chain; each connection closed after its answer."""
    _, chain, key = pki["first"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    script = Script(headers={"Connection": "close"})
    with serving(script, context) as url:
        yield url, script, context


class Site:
    """HEC over TLS (`chain_server`), the PKI, a folder for bundles, and clients whose CA loads
    are recorded."""

    def __init__(self, server: tuple[str, Script, ssl.SSLContext],
                 pki: dict[str, tuple[Path, Path, Path]], folder: Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.url, self.script, self.server_context = server
        self.pki = pki
        self.folder = folder
        self.monkeypatch = monkeypatch

    def client(self, ca_bundle: Path, url: str | None = None
               ) -> tuple[HecClient, list[dict[str, object]]]:
        """A client of this HEC (or of `url`) trusting `ca_bundle`, and its CA loads."""
        made = HecClient(config(url or self.url, ca_bundle=str(ca_bundle)))
        return made, spy_loads(made, self.monkeypatch)


@pytest.fixture
def site(chain_server: tuple[str, Script, ssl.SSLContext],
         pki: dict[str, tuple[Path, Path, Path]], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Site:
    return Site(chain_server, pki, tmp_path, monkeypatch)


def spy_loads(client: HecClient, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Every load_verify_locations call on the client's TLS context, by keyword."""
    context = client._pool.conn_kw["ssl_context"]
    loads: list[dict[str, object]] = []
    real = context.load_verify_locations

    def load(cafile: object = None, capath: object = None, cadata: object = None) -> None:
        loads.append({k: v for k, v in
                      {"cafile": cafile, "capath": capath, "cadata": cadata}.items() if v})
        real(cafile, capath, cadata)

    monkeypatch.setattr(context, "load_verify_locations", load)
    return loads


def test_only_the_root_that_anchors_hecs_chain_is_loaded(
    site: Site,
) -> None:
    root = site.pki["first"][0]
    client, loads = site.client(bundle(site.folder, site.pki["second"][0], root))
    outcomes = [client.post(b"{}").verdict for _ in range(2)]  # two connections, one choice
    client.close()
    assert outcomes == [Verdict.ACCEPTED] * 2 and len(site.script.seen) == 2
    assert client._trust is _Trust.CHOSEN
    assert loads == [{"cadata": root.read_text().strip()}]  # the probe sent nothing


def test_a_bundle_without_hecs_ca_is_loaded_whole_and_refuses_it(
    site: Site, caplog: pytest.LogCaptureFixture,
) -> None:
    ca = bundle(site.folder, site.pki["second"][0])
    client, loads = site.client(ca)
    with caplog.at_level("INFO", logger="ext.sender.hec"):
        out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError") and site.script.seen == []
    assert loads == [{"cafile": str(ca)}] and client._trust is _Trust.ALL
    assert "no CA of the bundle names HEC's certificate chain" in caplog.text


def test_a_chain_the_chosen_cas_do_not_verify_is_tried_with_every_ca(
    site: Site, caplog: pytest.LogCaptureFixture,
) -> None:
    # HEC's certificate is renewed under another CA of the bundle between two connections.
    ca = bundle(site.folder, site.pki["first"][0], site.pki["second"][0])
    client, loads = site.client(ca)
    first = client.post(b"{}")
    _, chain, key = site.pki["second"]
    site.server_context.load_cert_chain(chain, key)
    with caplog.at_level("INFO", logger="ext.sender.hec"):
        renewed = client.post(b"{}")
    client.close()
    assert (first.verdict, renewed.verdict) == (Verdict.ACCEPTED, Verdict.ACCEPTED)
    assert len(site.script.seen) == 2 and client._trust is _Trust.ALL
    assert loads == [{"cadata": site.pki["first"][0].read_text().strip()}, {"cafile": str(ca)}]
    assert "the CAs chosen for HEC do not verify its certificate" in caplog.text


def test_a_wrong_host_name_is_refused_with_every_ca_too(
    site: Site,
) -> None:
    ca = bundle(site.folder, site.pki["first"][0])
    client, loads = site.client(ca, site.url.replace("127.0.0.1", "localhost"))
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError") and site.script.seen == []
    assert [list(load) for load in loads] == [["cadata"], ["cafile"]]  # chosen, then all


def test_a_hashed_ca_directory_is_trusted_as_is(
    site: Site,
) -> None:
    root = site.pki["first"][0]
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(root)],
                            check=True, capture_output=True, text=True).stdout.strip()
    folder = site.folder / "cas"
    folder.mkdir()
    shutil.copy(root, folder / f"{digest}.0")
    client, loads = site.client(folder)
    client.trust()
    out = client.post(b"{}")
    client.close()
    assert out.verdict is Verdict.ACCEPTED and len(site.script.seen) == 1
    assert loads == [{"capath": str(folder)}]  # no probe: OpenSSL reads only what it needs


def test_a_hec_that_does_not_answer_leaves_the_choice_to_the_next_connection(
    pki: dict[str, tuple[Path, Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "https://127.0.0.1:9"  # discard: nothing listens
    client = HecClient(config(url, ca_bundle=str(bundle(tmp_path, pki["first"][0]))))
    loads = spy_loads(client, monkeypatch)
    client.prepare()  # logged, not raised
    out = client.post(b"{}")
    client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "NewConnectionError")
    assert loads == [] and client._trust is _Trust.PENDING  # no CA loaded for nothing


def test_a_server_that_does_not_speak_tls_gets_every_ca_and_the_usual_refusal(
    pki: dict[str, tuple[Path, Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script()
    with serving(script) as plain:
        ca = bundle(tmp_path, pki["first"][0])
        client = HecClient(config(plain.replace("http://", "https://"), ca_bundle=str(ca)))
        loads = spy_loads(client, monkeypatch)
        out = client.post(b"{}")
        client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError")
    assert loads == [{"cafile": str(ca)}] and client._trust is _Trust.ALL


def test_a_bundle_of_a_few_cas_is_loaded_whole_without_a_probe(
    pki: dict[str, tuple[Path, Path, Path]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "A bundle with only your endpoint's CA": the fastest setting, nothing to choose.
    root = pki["first"][0]
    client = HecClient(config("https://127.0.0.1:9", ca_bundle=str(root)))
    loads = spy_loads(client, monkeypatch)
    client.trust()  # no connection: port 9 would refuse a probe
    client.close()
    assert loads == [{"cafile": str(root)}] and client._trust is _Trust.ALL


def test_a_bundle_of_as_many_cas_as_are_loaded_whole_is_loaded_without_a_probe(
    pki: dict[str, tuple[Path, Path, Path]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    others = pki["first"][0].parents[1] / "others.pem"  # LOAD_WHOLE_MAX certificates
    client = HecClient(config("https://127.0.0.1:9", ca_bundle=str(others)))
    loads = spy_loads(client, monkeypatch)
    client.trust()  # no connection: port 9 would refuse a probe
    client.close()
    assert loads == [{"cafile": str(others)}] and client._trust is _Trust.ALL


@pytest.mark.parametrize("size", ["a few CAs", "a bundle to choose from"])
def test_the_ca_bundle_is_read_once_however_often_trust_is_asked(
    pki: dict[str, tuple[Path, Path, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    size: str,
) -> None:
    # The courier asks at its start, then `prepare` again: loaded whole, or read and kept for
    # the choice, the file is read once.
    root = pki["first"][0]
    ca = root if size == "a few CAs" else bundle(tmp_path, root)
    client = HecClient(config("https://127.0.0.1:9", ca_bundle=str(ca)))
    loads = spy_loads(client, monkeypatch)
    reads: list[str] = []
    real_read = trust.read_bundle

    def read_bundle(path: str) -> trust.Bundle:
        reads.append(path)
        return real_read(path)

    monkeypatch.setattr(trust, "read_bundle", read_bundle)
    for _ in range(3):
        client.trust()  # no connection: port 9 would refuse a probe
    client.close()
    assert reads == [str(ca)]
    assert loads == ([{"cafile": str(ca)}] if size == "a few CAs" else [])


def test_a_ca_bundle_without_a_certificate_is_logged_then_met_by_the_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # Read, but nothing OpenSSL can load: reported as urllib3 reports an unreadable bundle, so
    # `trust` (the courier's start) logs it and the request is a retry, not an exception.
    ca = tmp_path / "empty.pem"
    ca.write_text("no certificate here\n")
    client = HecClient(config("https://127.0.0.1:9", ca_bundle=str(ca)))
    with caplog.at_level("INFO", logger="ext.sender.hec"):
        client.trust()
    out = client.post(b"{}")
    client.close()
    assert "cannot load the CAs" in caplog.text
    assert (out.verdict, out.text) == (Verdict.RETRY, "SSLError")


def test_a_chain_that_cannot_be_read_gets_every_ca(
    site: Site,
) -> None:
    ca = bundle(site.folder, site.pki["first"][0])
    client, loads = site.client(ca)
    site.monkeypatch.setattr(trust, "peer_chain", lambda sock: [b"\x30\x03not DER"])
    out = client.post(b"{}")
    client.close()
    assert out.verdict is Verdict.ACCEPTED and len(site.script.seen) == 1
    assert loads == [{"cafile": str(ca)}] and client._trust is _Trust.ALL
