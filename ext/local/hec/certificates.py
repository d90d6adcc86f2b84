"""Throwaway certificates for a local HEC over TLS (tests and benchmarks only; the openssl CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

# The extensions a real CA sets (Python 3.13 verifies with VERIFY_X509_STRICT).
_EXTENSIONS = (
    "[req]\ndistinguished_name = dn\n[dn]\n"
    "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
    "[server]\nbasicConstraints = CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n"
    "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
)
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 only, valid one day; needs the openssl CLI."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", *_EC_KEY, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def ca_chain(folder: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """(root CA, chain, key): a root CA "<name> root", an intermediate CA it signed, and a
    server certificate for 127.0.0.1 the intermediate signed; the chain file holds the server
    certificate then the intermediate, as a production endpoint presents them."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(_EXTENSIONS)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def sign(pem: Path, key: Path, subject: str, issuer: tuple[Path, Path], kind: str) -> None:
        request = pem.with_suffix(".csr")
        openssl("req", "-new", "-config", str(config), *_EC_KEY, "-subj", subject,
                "-keyout", str(key), "-out", str(request))  # fmt: skip
        openssl("x509", "-req", "-in", str(request), "-CA", str(issuer[0]), "-CAkey",
                str(issuer[1]), "-CAcreateserial", "-days", "1", "-extfile", str(config),
                "-extensions", kind, "-out", str(pem))  # fmt: skip

    root, root_key = folder / f"{name}-root.pem", folder / f"{name}-root-key.pem"
    openssl("req", "-x509", "-config", str(config), "-extensions", "ca", *_EC_KEY, "-days", "1",
            "-subj", f"/CN={name} root", "-keyout", str(root_key), "-out", str(root))  # fmt: skip
    middle, middle_key = folder / f"{name}-intermediate.pem", folder / f"{name}-inter-key.pem"
    sign(middle, middle_key, f"/CN={name} intermediate", (root, root_key), "ca")
    server, key = folder / f"{name}-server.pem", folder / f"{name}-server-key.pem"
    sign(server, key, "/CN=127.0.0.1", (middle, middle_key), "server")
    chain = folder / f"{name}-chain.pem"
    chain.write_bytes(server.read_bytes() + middle.read_bytes())
    return root, chain, key
