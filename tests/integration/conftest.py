from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.local.hec import HecReceiver, HecToken

TOKEN = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hec(tmp_path: Path) -> Iterator[HecReceiver]:
    receiver = HecReceiver(
        tmp_path / "hec.sqlite",
        tokens=(HecToken(name="lambda", value=TOKEN, indexes=("main", "lambda")),),
    )
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="session")
def local_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An /opt folder with this checkout's extension behind the real bootstrap launcher."""
    from ext.local.layer import make_local_opt

    return make_local_opt(tmp_path_factory.mktemp("opt"))
