"""The CAs worth loading to verify HEC: the few of a CA bundle that can anchor its chain.

Loading a CA bundle is most of a TLS client's start-up: OpenSSL 3 decodes every certificate of
it, ~40 ms of a core for a system bundle of ~145 CAs, ~14 times that at 128 MB's CPU share
(issue 12). Verifying HEC's certificate consults one or two of them. So the sender first looks
at the chain HEC presents (a handshake without verification whose connection carries nothing and
is closed: `peer_chain`), then loads only the bundle's certificates whose subject names a
certificate of that chain or its issuer, and those certificates' own issuers (`anchors`); the
real connection verifies with them as it would with the whole bundle (CERT_REQUIRED, host name,
the same context and flags). The bundle is split and decoded here in pure Python, ~1 ms; names
are read only from the certificates that hold one the chain needs.

Why this never trusts more than the whole bundle: every certificate loaded is one of the
bundle's, byte for byte, verified with the same context, flags and host-name check, so a chain
OpenSSL accepts with the chosen CAs ends at a CA the operator trusts and passed every check the
whole bundle demands. The CAs left out are those OpenSSL does not consult for this chain anyway
(it looks issuers up by name); a name the byte comparison misses (encoded differently in the two
certificates) or a chain changed since the probe makes verification fail, and the caller then
loads the whole bundle and connects again: a doubt costs the time saved, never a connection.
Whatever the unverified probe is shown (by HEC or by someone in between) only chooses which of
the trusted CAs are loaded; nothing is sent over it.
"""

from __future__ import annotations

import binascii
import os
import ssl

# A bundle this small is loaded whole, without a probe: ~0.2 ms of CPU per CA, against ~2 ms and
# a round trip for the probe's handshake (OpenSSL 3.0, x86_64). "A bundle with only your
# endpoint's CA" (SPLUNK_CA_BUNDLE) is the fastest setting there is.
LOAD_WHOLE_MAX = 8
PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
_SEQUENCE = 0x30
_INTEGER = 0x02
_VERSION = 0xA0  # [0] EXPLICIT, before the serial number


class Bundle:
    """A CA bundle's certificates (DER), with the PEM text OpenSSL reads for each."""

    __slots__ = ("_certificates",)

    def __init__(self, pem: bytes) -> None:
        self._certificates: list[tuple[bytes, bytes]] = []  # (DER, PEM)
        pos = 0
        while (begin := pem.find(PEM_BEGIN, pos)) >= 0:
            end = pem.find(PEM_END, begin)
            if end < 0:
                break
            pos = end + len(PEM_END)
            try:
                der = binascii.a2b_base64(pem[begin + len(PEM_BEGIN):end])
            except binascii.Error:
                continue  # never chosen: if it was needed, verification fails -> every CA
            self._certificates.append((der, pem[begin:pos]))

    def __len__(self) -> int:
        return len(self._certificates)

    def anchors(self, chain: list[bytes]) -> str | None:
        """The PEM of the certificates that can anchor `chain` (DER, leaf first), or None if
        none can: every certificate whose subject is a name of the chain (a subject or an
        issuer), then the issuers of those, until none is added."""
        wanted: list[bytes] = []
        for der in chain:
            wanted.extend(names(der))
        chosen: dict[bytes, None] = {}  # PEM, in the order found
        seen: set[bytes] = set()
        while wanted:
            name = wanted.pop()
            if name in seen:
                continue
            seen.add(name)
            for der, pem in self._certificates:
                if name not in der:  # a byte search first: names are read only where it hits
                    continue
                try:
                    issuer, subject = names(der)
                except ValueError:
                    continue  # as an unreadable PEM block: never chosen
                if subject == name:
                    chosen[pem] = None
                    wanted.append(issuer)
        if not chosen:
            return None
        return b"\n".join(chosen).decode("ascii")


def read_bundle(path: str) -> Bundle:
    """The bundle in the PEM file at `path` (OSError if it cannot be read)."""
    with open(path, "rb") as file:
        return Bundle(file.read())


def locations(ca_bundle: str | None) -> tuple[str | None, str | None]:
    """(CA file, CA directory) that verification trusts: SPLUNK_CA_BUNDLE (a file, or a
    directory OpenSSL reads lazily by subject hash), else OpenSSL's defaults (SSL_CERT_FILE and
    SSL_CERT_DIR honoured), as `SSLContext.load_default_certs` loads them."""
    if ca_bundle:
        return (None, ca_bundle) if os.path.isdir(ca_bundle) else (ca_bundle, None)
    defaults = ssl.get_default_verify_paths()
    return defaults.cafile, defaults.capath


def peer_chain(sock: ssl.SSLSocket) -> list[bytes]:
    """The certificates (DER, leaf first) the peer of a connected TLS socket presented."""
    public = getattr(sock, "get_unverified_chain", None)  # Python 3.13
    if public is not None:
        return list(public() or [])
    sslobj = getattr(sock, "_sslobj", None)  # 3.10 - 3.12: the same call, not yet public
    certs = sslobj.get_unverified_chain() if sslobj is not None else None
    return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in certs or []]  # type: ignore[attr-defined]


def names(der: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) of a DER X.509 certificate, each its whole Name TLV as encoded.

    Raises ValueError if the bytes do not hold a certificate's structure up to the subject.
    """
    _, body, _ = _element(der, 0, _SEQUENCE)  # Certificate
    _, pos, tbs_end = _element(der, body, _SEQUENCE)  # TBSCertificate
    if pos < tbs_end and der[pos] == _VERSION:
        pos = _element(der, pos, _VERSION)[2]
    pos = _element(der, pos, _INTEGER)[2]  # serialNumber
    pos = _element(der, pos, _SEQUENCE)[2]  # signature (algorithm)
    issuer_at, _, pos = _element(der, pos, _SEQUENCE)
    issuer = der[issuer_at:pos]
    pos = _element(der, pos, _SEQUENCE)[2]  # validity
    subject_at, _, end = _element(der, pos, _SEQUENCE)
    if end > tbs_end:
        raise ValueError("the subject runs past the certificate")
    return issuer, der[subject_at:end]


def _element(der: bytes, pos: int, tag: int) -> tuple[int, int, int]:
    """(start, content start, end) of the DER element at `pos`, which must have `tag`."""
    if pos + 2 > len(der) or der[pos] != tag:
        raise ValueError("not the expected DER element")
    length = der[pos + 1]
    content = pos + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or content + size > len(der):
            raise ValueError("a DER length that cannot be")
        length = int.from_bytes(der[content:content + size], "big")
        content += size
    end = content + length
    if end > len(der):
        raise ValueError("a DER element longer than its certificate")
    return pos, content, end
