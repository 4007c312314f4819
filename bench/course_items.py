"""The course's ``items.Item`` for the benchmarks' notebook side: course pickles unpickle into it as in the course."""

from __future__ import annotations

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import reference_notebook as nb  # noqa: E402 - the notebook's formatting, unchanged


class Item(nb.Item):  # attributes restored from the pickle, test_prompt() from the notebook
    pass


def install() -> None:
    """Make ``items.Item`` importable, so ``pickle.load`` rebuilds the course's objects."""
    Item.__module__ = "items"
    module = types.ModuleType("items")
    module.Item = Item
    sys.modules["items"] = module
