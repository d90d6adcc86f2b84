"""The SigV4 signer against the published test suite (tests/unit/data/sigv4_suite.json) and
against botocore's signer on hypothesis-generated requests (botocore is a test-only dependency)."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import botocore.auth as botocore_auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.sender import sigv4

SUITE = json.loads((Path(__file__).parent / "data" / "sigv4_suite.json").read_text("utf-8"))


def parse_suite_request(raw: str) -> dict[str, Any]:
    """The suite's .req format: request line, headers (indented lines continue the one above),
    a blank line, the body. The path is taken as written: it is the path as sent."""
    head, _, body = raw.partition("\n\n")
    lines = head.split("\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rsplit(" ", 1)[0]
    path, _, query = target.partition("?")
    headers: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            headers[-1][1] += " " + line
        else:
            name, _, value = line.partition(":")
            headers.append([name, value])
    params = [
        (unquote(name), unquote(value))
        for name, _, value in (pair.partition("=") for pair in query.split("&") if pair)
    ]
    return {"method": method, "path": path, "query": params, "headers": headers,
            "body": body.encode()}


@pytest.mark.parametrize("case", SUITE["cases"], ids=lambda c: c["name"])
def test_published_suite_case(case: dict[str, Any]) -> None:
    request = parse_suite_request(case["req"])
    host = next(v for n, v in request["headers"] if n.lower() == "host")
    amz_date = next(v for n, v in request["headers"] if n.lower() == "x-amz-date")
    # Host, X-Amz-Date and the session token are the signer's to add.
    own = {"host", "x-amz-date", "x-amz-security-token"}
    headers = [(n, v) for n, v in request["headers"] if n.lower() not in own]
    credentials = sigv4.Credentials(
        SUITE["access_key_id"], SUITE["secret_access_key"], case.get("session_token")
    )
    signed_headers = [("host", host), *headers, ("x-amz-date", amz_date)]
    if credentials.session_token:
        signed_headers.append(("x-amz-security-token", credentials.session_token))
    creq, _ = sigv4.canonical_request(
        request["method"], request["path"], request["query"], signed_headers,
        hashlib.sha256(request["body"]).hexdigest(),
    )
    assert creq == case["creq"]
    added = sigv4.sign(
        request["method"], host, request["path"], query=request["query"], headers=headers,
        body=request["body"], credentials=credentials, region=SUITE["region"],
        service=SUITE["service"], amz_date=amz_date,
    )
    assert added["Authorization"] == case["authz"]
    assert added["X-Amz-Date"] == amz_date


def test_credentials_repr_hides_the_secret_and_the_session_token() -> None:
    text = repr(sigv4.Credentials("AKID", "very-secret-key", "session-token-value"))
    assert "AKID" in text
    assert "very-secret-key" not in text
    assert "session-token-value" not in text


# --- against botocore ------------------------------------------------------------------------


# Characters botocore and the signer both take as they are in a path sent on the wire.
PATH_CHARS = st.sampled_from([*"abcXYZ019-_.~!$&'()*+,;=:@%", "\u00e9", "\u1234", " "])
SEGMENT = st.one_of(st.just("."), st.just(".."), st.just(""), st.text(PATH_CHARS, max_size=8))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
# Header values as HTTP carries them: visible ASCII and inner spaces or tabs.
HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
                       max_size=20)
HEADER_NAME = st.from_regex(r"\Ax-(test|amz-meta)-[a-z0-9]{1,6}\Z")


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    segments = draw(st.lists(SEGMENT, max_size=5))
    path = "/" + "/".join(segments)
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        "path": path,
        "query": draw(st.lists(st.tuples(TEXT, TEXT), max_size=4)),
        "headers": draw(st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=4)),
        "body": draw(st.binary(max_size=64)),
        "token": draw(st.none() | st.text(st.sampled_from("ABCxyz019+/="), min_size=1)),
        "region": draw(st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"])),
        "service": draw(st.sampled_from(["secretsmanager", "ssm", "service"])),
        "port": draw(st.sampled_from([None, 443, 4566, 8443])),
        "when": draw(st.datetimes(datetime.datetime(2015, 1, 1), datetime.datetime(2035, 1, 1))),
    }


def botocore_authorization(req: dict[str, Any], host: str) -> dict[str, str]:
    # botocore signs the query string of the URL as it stands, so the URL is encoded here by the
    # standard library, not by the signer under test: RFC 3986's unreserved set, '/' included.
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in req["query"])
    url = f"https://{host}{req['path']}" + (f"?{query}" if query else "")
    request = AWSRequest(method=req["method"], url=url, headers=req["headers"], data=req["body"])
    credentials = BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                  req["token"])
    now = req["when"].replace(tzinfo=datetime.UTC)
    original = botocore_auth.get_current_datetime
    botocore_auth.get_current_datetime = lambda: now  # botocore's clock, fixed for this request
    try:
        botocore_auth.SigV4Auth(credentials, req["service"], req["region"]).add_auth(request)
    finally:
        botocore_auth.get_current_datetime = original
    return dict(request.headers.items())


@settings(max_examples=200, deadline=None)
@given(requests())
def test_agrees_with_botocore(req: dict[str, Any]) -> None:
    host = "example.amazonaws.com" + ("" if req["port"] in (None, 443) else f":{req['port']}")
    expected = botocore_authorization(req, host)
    credentials = sigv4.Credentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", req["token"]
    )
    added = sigv4.sign(
        req["method"], host, req["path"], query=req["query"], headers=list(req["headers"].items()),
        body=req["body"], credentials=credentials, region=req["region"], service=req["service"],
        amz_date=req["when"].strftime("%Y%m%dT%H%M%SZ"),
    )
    assert added["X-Amz-Date"] == expected["X-Amz-Date"]
    assert added["Authorization"] == expected["Authorization"]
    assert added.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token")


def test_a_slash_is_kept_in_the_path_and_encoded_in_the_query() -> None:
    # SSM's and Secrets Manager's names hold slashes ("/hec/token"): in a query name or value
    # AWS signs each one as %2F; only the path keeps them.
    query = [("Name", "/hec/token"), ("x/y", "")]
    req: dict[str, Any] = {
        "method": "GET", "path": "/a/b/", "query": query, "headers": {}, "body": b"",
        "token": None, "region": "us-east-1", "service": "ssm", "port": None,
        "when": datetime.datetime(2026, 12, 3, 14, 50, 22),
    }
    assert sigv4.canonical_query(query) == "Name=%2Fhec%2Ftoken&x%2Fy="
    expected = botocore_authorization(req, "example.amazonaws.com")
    added = sigv4.sign(
        "GET", "example.amazonaws.com", "/a/b/", query=query, headers=[], body=b"",
        credentials=sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region="us-east-1", service="ssm", amz_date="20261203T145022Z",
    )
    assert added["Authorization"] == expected["Authorization"]
