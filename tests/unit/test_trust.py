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


class _Certificate:
    """As ssl's certificate objects (3.10-3.12): DER from public_bytes."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def public_bytes(self, encoding: int) -> bytes:
        assert encoding == ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
        return self.der


class _SslObject:
    def __init__(self, chain: list[_Certificate] | None) -> None:
        self.chain = chain

    def get_unverified_chain(self) -> list[_Certificate] | None:
        return self.chain


class _OldSocket:
    """A TLS socket of Python 3.10-3.12: the chain only through its private _sslobj."""

    def __init__(self, sslobj: _SslObject | None) -> None:
        self._sslobj = sslobj


class _NewSocket:
    """A TLS socket of Python 3.13: the public call, DER already."""

    def __init__(self, chain: list[bytes] | None) -> None:
        self.chain = chain

    def get_unverified_chain(self) -> list[bytes] | None:
        return self.chain


def test_the_peer_chain_is_read_on_every_python_the_layer_supports() -> None:
    assert trust.peer_chain(_NewSocket([leaf, middle])) == [leaf, middle]  # type: ignore[arg-type]
    assert trust.peer_chain(_NewSocket(None)) == []  # type: ignore[arg-type]
    old = _OldSocket(_SslObject([_Certificate(leaf), _Certificate(middle)]))
    assert trust.peer_chain(old) == [leaf, middle]  # type: ignore[arg-type]
    assert trust.peer_chain(_OldSocket(_SslObject(None))) == []  # type: ignore[arg-type]
    assert trust.peer_chain(_OldSocket(None)) == []  # type: ignore[arg-type]  # not connected


def test_names_need_the_structure_only_up_to_the_subject() -> None:
    # As the docstring says: nothing after the subject is read, even an empty subject (a Name
    # with no RDN, as certificates that name their host in the SAN only have) at the very end.
    empty = tlv(0x30, b"")
    tbs = tlv(0x02, b"\x01") + ALGORITHM + ROOT + tlv(0x30, b"validity") + empty
    assert trust.names(tlv(0x30, tlv(0x30, tbs))) == (ROOT, empty)


def test_long_form_lengths_of_up_to_four_bytes_are_read() -> None:
    # BER's long form with leading zero bytes (DER would use the shortest): the same names.
    def long_tlv(tag: int, content: bytes) -> bytes:
        return bytes([tag, 0x84]) + len(content).to_bytes(4, "big") + content
    issuer, subject = ROOT, name("a subject")
    tbs = tlv(0x02, b"\x01") + ALGORITHM + issuer + tlv(0x30, b"validity") + subject
    assert trust.names(long_tlv(0x30, long_tlv(0x30, tbs))) == (issuer, subject)
    # down to an empty subject, ending the bytes
    empty = long_tlv(0x30, b"")
    tbs = tlv(0x02, b"\x01") + ALGORITHM + issuer + tlv(0x30, b"validity") + empty
    assert trust.names(long_tlv(0x30, long_tlv(0x30, tbs))) == (issuer, empty)


ALGORITHM = tlv(0x30, tlv(0x06, b"\x2a\x86\x48\xce\x3d\x04\x03\x02"))
AFTER_SERIAL = ALGORITHM + ROOT + tlv(0x30, b"validity") + LEAF


@pytest.mark.parametrize("der", [
    # an indefinite length (BER only), here the serial number's: not a certificate's encoding
    tlv(0x30, tlv(0x30, b"\x02\x80" + AFTER_SERIAL)),
    b"\x30\x02\x30\x00",  # an empty TBSCertificate, ending the bytes
    b"\x31" + certificate(ROOT, LEAF)[1:],  # a SET where the Certificate's SEQUENCE is
    # a context tag other than the version's [0] before the serial number
    tlv(0x30, tlv(0x30, tlv(0xA1, tlv(0x02, b"\x02")) + tlv(0x02, b"\x01") + AFTER_SERIAL)),
    # a length in five bytes (4 GiB and more)
    tlv(0x30, tlv(0x30, b"\x02\x85\x00\x00\x00\x00\x01\x01" + AFTER_SERIAL)),
    # a TBSCertificate that ends before its subject does
    tlv(0x30, bytes([0x30, len(b"\x02\x01\x01" + AFTER_SERIAL) - 2]) + b"\x02\x01\x01"
        + AFTER_SERIAL),
])
def test_what_is_not_a_certificates_structure_is_refused_with_value_error(der: bytes) -> None:
    with pytest.raises(ValueError):
        trust.names(der)


def test_a_block_that_cannot_be_read_leaves_the_rest_of_the_bundle_usable() -> None:
    text = pem(root)
    broken = text[:28] + b"AAAA" + text[32:]  # the root's names still in it, its structure not
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n"  # not base64
    bundle = trust.Bundle(garbage + broken + pem(decoy) + pem(root))
    assert len(bundle) == 3  # the garbage block alone is skipped
    assert chosen(garbage + broken + pem(decoy) + pem(root), [leaf, middle]) == [root]


def test_only_a_certificate_whose_subject_is_the_name_is_chosen_for_it() -> None:
    # Certificates the root issued hold its name too, as their issuer: they are not its CA.
    issued = [certificate(ROOT, name("a")), certificate(ROOT, name("a much longer name"))]
    bundle = pem(issued[0]) + pem(root) + pem(issued[1])
    assert chosen(bundle, [leaf, middle]) == [root]


def test_every_name_of_the_chain_is_looked_up_even_after_a_repeated_one() -> None:
    # The root is reached (and its own name wanted again) before the leaf's subject is looked
    # up: a bundle that also holds HEC's own certificate gives both.
    assert chosen(pem(root) + pem(decoy) + pem(leaf), [leaf, middle]) == [root, leaf]
