"""The CA choice for HEC's chain (ext/sender/trust.py): the DER names, the bundle, the closure.

Certificates here are built in DER with only the structure `names` reads (the real ones, made by
the openssl CLI, are in tests/integration/test_hec_trust.py).
"""

from __future__ import annotations

import base64
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ext.sender import trust


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def name(common_name: str) -> bytes:
    """A Name: one RDN with one CN (UTF8String)."""
    cn = tlv(0x30, tlv(0x06, b"\x55\x04\x03") + tlv(0x0C, common_name.encode()))
    return tlv(0x30, tlv(0x31, cn))


def certificate(issuer: bytes, subject: bytes, *, serial: int = 1, version: bool = True) -> bytes:
    algorithm = tlv(0x30, tlv(0x06, b"\x2a\x86\x48\xce\x3d\x04\x03\x02"))
    tbs = b"".join([
        tlv(0xA0, tlv(0x02, b"\x02")) if version else b"",
        tlv(0x02, serial.to_bytes(8, "big")),
        algorithm, issuer, tlv(0x30, b"validity"), subject, tlv(0x30, b"public key"),
    ])
    return tlv(0x30, tlv(0x30, tbs) + algorithm + tlv(0x03, b"\x00signature"))


def pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


names_text = st.text(min_size=0, max_size=400)


@given(names_text, names_text, st.booleans())
def test_names_are_the_issuer_and_subject_as_encoded(
    issuer_cn: str, subject_cn: str, version: bool,
) -> None:
    issuer, subject = name(issuer_cn), name(subject_cn)  # up to 1,600 bytes: long DER lengths
    assert trust.names(certificate(issuer, subject, version=version)) == (issuer, subject)


@given(names_text, names_text, st.data())
def test_a_cut_certificate_is_refused_with_value_error(
    issuer_cn: str, subject_cn: str, data: st.DataObject,
) -> None:
    der = certificate(name(issuer_cn), name(subject_cn))
    cut = data.draw(st.integers(0, len(der) - 1))
    with pytest.raises(ValueError):
        trust.names(der[:cut])


@given(st.binary(max_size=300))
def test_any_bytes_give_names_or_value_error(der: bytes) -> None:
    try:
        issuer, subject = trust.names(der)
    except ValueError:
        return
    assert issuer in der and subject in der


ROOT, OTHER_ROOT = name("root"), name("other root")
MIDDLE, LEAF = name("intermediate"), name("127.0.0.1")
root = certificate(ROOT, ROOT)
middle = certificate(ROOT, MIDDLE)
leaf = certificate(MIDDLE, LEAF)
other = certificate(OTHER_ROOT, OTHER_ROOT)
decoy = certificate(name("decoy"), name("decoy"))


def chosen(bundle: bytes, chain: list[bytes]) -> list[bytes]:
    """The DER of the certificates `anchors` picks, in the bundle's order."""
    picked = trust.Bundle(bundle).anchors(chain)
    if picked is None:
        return []
    return [base64.b64decode(block.split(b"-----")[2]) for block in
            picked.encode().split(trust.PEM_END)[:-1]]


def test_only_the_ca_that_issued_the_chain_is_chosen() -> None:
    bundle = pem(other) + pem(root) + pem(decoy)
    assert chosen(bundle, [leaf, middle]) == [root]
    assert chosen(bundle, [leaf]) == []  # the intermediate is not sent and not in the bundle


def test_a_ca_in_the_bundle_anchors_the_chain_above_it_too() -> None:
    # The bundle holds the intermediate: it, and the root that issued it, can both anchor.
    assert sorted(chosen(pem(decoy) + pem(middle) + pem(root), [leaf])) == sorted([middle, root])


def test_every_certificate_with_the_issuers_name_is_chosen() -> None:
    # Same name, another key (a renewed root): OpenSSL tells them apart, so both are loaded.
    renewed = certificate(ROOT, ROOT, serial=2)
    assert chosen(pem(root) + pem(decoy) + pem(renewed), [leaf, middle]) == [root, renewed]


def test_a_self_signed_leaf_in_the_bundle_anchors_itself() -> None:
    self_signed = certificate(LEAF, LEAF)
    assert chosen(pem(other) + pem(self_signed), [self_signed]) == [self_signed]


def test_cross_signed_chains_pick_whichever_issuer_the_bundle_holds() -> None:
    # HEC sends leaf, intermediate and the root cross-signed by an older root the bundle
    # dropped: the root itself is in the bundle and anchors the intermediate.
    cross = certificate(OTHER_ROOT, ROOT)
    assert chosen(pem(root) + pem(decoy), [leaf, middle, cross]) == [root]


def test_blocks_that_are_not_certificates_are_never_chosen() -> None:
    text = pem(root)
    broken = text[:28] + b"AAAA" + text[32:]  # the root's names still in it, its structure not
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n"  # not base64
    bundle = trust.Bundle(garbage + broken + b"text between\n" + pem(other))
    assert bundle.anchors([leaf, middle]) is None
    assert len(trust.Bundle(pem(root) + b"-----BEGIN CERTIFICATE-----\nno end")) == 1


def test_the_chosen_pem_is_the_bundles_text() -> None:
    text = pem(root)
    picked = trust.Bundle(pem(decoy) + text).anchors([leaf, middle])
    assert picked is not None and picked.encode() == text.rstrip(b"\n")


def test_locations_a_file_a_directory_or_the_defaults(tmp_path: object) -> None:
    assert trust.locations("/opt/ca.pem") == ("/opt/ca.pem", None)
    assert trust.locations(str(tmp_path)) == (None, str(tmp_path))
    defaults = ssl.get_default_verify_paths()
    assert trust.locations(None) == (defaults.cafile, defaults.capath)
