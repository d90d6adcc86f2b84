"""The extension's errors (ext/errors.py): the line each one reads as, and each crossing a
process boundary (pickled) whole."""

from __future__ import annotations

import pickle

from ext import errors


def test_an_api_error_names_the_call_the_status_and_at_most_300_bytes_of_the_answer() -> None:
    # Lambda's answer to a refused register or exit call goes into the extension's one line;
    # an answer of any length must not flood the function's log.
    body = b"a" * 299 + b"b" + b"c" * 100
    err = errors.ApiError("/2020-01-01/extension/register", 403, body)
    assert str(err) == "/2020-01-01/extension/register answered 403: b'" + "a" * 299 + "b'"
    assert str(errors.ApiError("/next", 500, b"")) == "/next answered 500: b''"
    assert (err.path, err.status, err.body) == ("/2020-01-01/extension/register", 403, body)


def test_errors_pickle_whole() -> None:
    api = pickle.loads(pickle.dumps(errors.ApiError("/next", 502, b"x" * 400)))
    assert isinstance(api, errors.ApiError) and isinstance(api, errors.ExtError)
    assert (api.path, api.status, api.body, str(api)) == (
        "/next", 502, b"x" * 400, "/next answered 502: b'" + "x" * 300 + "'")
    config = pickle.loads(pickle.dumps(errors.ConfigError(["A is bad", "B is bad"])))
    assert isinstance(config, errors.ConfigError) and isinstance(config, errors.ExtError)
    assert (config.problems, str(config)) == (["A is bad", "B is bad"], "A is bad; B is bad")
