from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.openai_stub import StubOpenAI


@pytest.fixture
def openai_stub() -> Iterator[StubOpenAI]:
    """A fresh OpenAI Files/Uploads API stub on 127.0.0.1 (random port); ``.base_url`` ends in ``/v1``."""
    with StubOpenAI() as stub:
        yield stub
