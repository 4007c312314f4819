"""Development data: a deterministic pickle of course-shaped product items (a list of ``items.Item``).

Like the course's curated Amazon items ("LLM Engineering", week 6): objects of the global ``items.Item`` (not
importable) whose attribute dict has the keys of :data:`FIELDS`; ``token_count`` is ``round(len(prompt) / 4)``,
about 3% of the items carry characters awkward to escape, and item ``i`` depends only on ``(seed, i)``. The
vocabulary is ``sample_vocab.json`` beside this file; neither is part of the installed package.

    python scripts/sample.py --n 600 --seed 42 --out data/sample/items.pkl
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import pickle
import re
import secrets
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

QUESTION = "How much does this cost to the nearest dollar?"
PREFIX = "Price is $"
MIN_PRICE = 0.5
MAX_PRICE = 999.49
#: Attribute order of the course's ``Item.__dict__`` (``category`` is set last, by the loader).
FIELDS = ("title", "price", "details", "prompt", "token_count", "include", "category")
#: Share of items that carry characters that are awkward to escape.
TRICKY_RATE = 0.03

VOCAB: dict[str, Any] = json.loads(Path(__file__).with_name("sample_vocab.json").read_text(encoding="utf-8"))
_CATEGORIES = VOCAB["categories"]
CATEGORIES = tuple(c["name"] for c in _CATEGORIES)
_CUM_WEIGHTS = list(itertools.accumulate(c["weight"] for c in _CATEGORIES))
_CARS = list(VOCAB["cars"].items())
_TRICKY = VOCAB["tricky"]
_DETAILS = VOCAB["details"]
# Template slots drawn when first used (the "details" ones are used only there).
_SLOT_CHOICES = {"warranty": VOCAB["warranties"], "origin": VOCAB["origins"], "watts": VOCAB["watts"],
                 "age": VOCAB["ages"], "series": VOCAB["series"], "printer": VOCAB["printers"],
                 "country": VOCAB["origins"], "month": VOCAB["months"]}
_SLOT_RANGES = {"n": (2, 7), "n2": (10, 60), "years": (20, 110), "year": (1890, 2012), "pct": (10, 100),
                "pieces": (12, 1200), "d": (2, 9), "piece_count": (1, 1500), "day": (1, 29),
                "first_year": (2004, 2024)}

# The course's Item.scrub / scrub_details.
_REMOVALS = ("By Manufacturer", "Item", "Date First", "Package", ":", "Number of", "Best Sellers",
             "Number", "Product ")
_SCRUB_CHARS = str.maketrans({c: " " for c in ':[]"{}【】'})
_DIGIT_RE = re.compile(r"\d")


def make_prompt(text: str, price: float) -> str:
    """The course's prompt: question, text, and the price rounded with plain ``round()`` (banker's)."""
    return f"{QUESTION}\n\n{text}\n\n{PREFIX}{str(round(price))}.00"


def _scrub(stuff: str) -> str:
    """The course's ``Item.scrub`` (its regexes, written with ``str`` methods for speed)."""
    stuff = " ".join(stuff.translate(_SCRUB_CHARS).split())
    stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
    search = _DIGIT_RE.search
    return " ".join([w for w in stuff.split(" ") if len(w) < 7 or not search(w)])


def _scrub_details(details: str) -> str:
    for remove in _REMOVALS:
        details = details.replace(remove, "")
    return details


class _Rng(Random):
    """``random.Random`` whose integer draws use one ``random()`` call each (fast; bias below 2**-40)."""

    def _randbelow(self, n: int) -> int:  # used by shuffle() and sample()
        return int(self.random() * n)

    def choice(self, seq):  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None) -> int:  # type: ignore[override]
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))


def _code(rng: Random, pattern: str) -> str:
    """A part or model number: each ``A`` becomes a random capital, each ``9`` a random digit."""
    rand = rng.random
    return "".join([chr(65 + int(rand() * 26)) if ch == "A" else chr(48 + int(rand() * 10)) if ch == "9"
                    else ch for ch in pattern])


def _price(rng: Random, median: float, sigma: float) -> float:
    mu = math.log(median)
    x = rng.lognormvariate(mu, sigma)
    for _ in range(3):
        if x <= MAX_PRICE:
            break
        x = rng.lognormvariate(mu, sigma)
    r = rng.random()
    # Mostly .99, .95, .00, .49 and .50 (x.50 exercises round()'s half-to-even in the prompt).
    cents = 99 if r < 0.45 else 95 if r < 0.55 else 0 if r < 0.70 else 49 if r < 0.75 else 50 if r < 0.80 \
        else rng.randrange(100)
    if int(x) == 0 and cents < 50:
        cents = 99  # $0.99 rather than a pile-up at the $0.50 floor
    return min(max(round(int(x) + cents / 100, 2), MIN_PRICE), MAX_PRICE)


def _weight(rng: Random, lbs: float) -> tuple[float, str]:
    w = lbs * rng.lognormvariate(0.0, 0.3)
    if w < 1.0 and rng.random() < 0.7:
        return w, f"{w * 16:.1f} ounces" if w * 16 < 10 else f"{w * 16:.0f} ounces"
    return w, f"{w:.2f} pounds" if w < 10 else f"{w:.1f} pounds"


def _dims(rng: Random, w: float) -> str:
    side = max(0.6, (w * 60.0) ** (1 / 3))  # ~60 cubic inches per pound
    a = side * rng.uniform(1.0, 2.2)
    b = side * rng.uniform(0.6, 1.2)
    c = side * side * side / (a * b) * rng.uniform(0.7, 1.3)
    return " x ".join(f"{v:.2f}".rstrip("0").rstrip(".") for v in (a, b, max(c, 0.2)))


def _compat(rng: Random, category: str) -> str:
    if category == "Automotive":
        make, models = _CARS[rng.randrange(len(_CARS))]
        y1 = rng.randrange(1996, 2021)
        y2 = min(2023, y1 + rng.randrange(0, 8))
        years = str(y1) if y1 == y2 else f"{y1}-{y2}"
        return f"for {years} {make} {rng.choice(models)}"
    if category == "Cell_Phones_and_Accessories":
        return "for " + rng.choice(VOCAB["phone_models"])
    return "for " + ", ".join(rng.sample(VOCAB["appliance_brands"], 2))  # Appliances


def _title(rng: Random, brand: str, model: str, noun: str, quals: list[str], compat: str, adj: str) -> str:
    q = rng.choice(quals) if quals else adj
    form = rng.randrange(8)
    if compat and form < 4:
        if q.startswith(("with ", "for ")):
            q = adj
        return (f"{brand} {model} {noun} {compat}", f"{brand} {noun} {compat}, {q}",
                f"{brand} {q} {noun} - {model} - {compat}", f"{adj} {noun} {compat} - {brand} {model}")[form]
    if form in (0, 4):
        return f"{brand} {model} {noun}"
    if form in (1, 5):
        return f"{brand} {noun}, {q}, {model}"
    if form == 6:
        q2 = rng.choice(quals) if quals else ""
        extra = f", {q2}" if q2 and q2 != q else ""
        return f"{brand} {adj} {noun} ({q}{extra}) {model}"
    if q.startswith(("with ", "for ")):  # "Ryobi Utility Knife with 10 Blades", not "Ryobi with 10 ..."
        return f"{brand} {model} {noun} {q}" if form == 2 else f"{brand} {noun} {q} {model}"
    return f"{brand} {model} {q} {noun}" if form == 2 else f"{brand} {q} {noun} {model}"


def _details(rng: Random, category: str, compat: str, slots: _Slots) -> dict[str, str]:
    """The product-details dict (stored as JSON), from the vocabulary's ``details`` rules.

    A rule is ``[key, when, value]``: ``when`` is a probability (1: always, without a draw) or ``"compat"``
    (only for items with a compatibility phrase); ``value`` is a template filled from ``slots`` or a list
    to choose from.
    """
    d: dict[str, str] = {}
    for key, when, value in itertools.chain(*(_DETAILS.get(part, ()) for part in ("common", category, "last"))):
        if bool(compat) if when == "compat" else when >= 1 or rng.random() < when:
            d[key] = rng.choice(value) if isinstance(value, list) else value.format_map(slots)
    return d


class _Slots(dict):
    """Template values for feature sentences; random ones are drawn only when a template uses them."""

    def __init__(self, rng: Random) -> None:
        super().__init__()
        self._rng = rng

    def __missing__(self, key: str) -> Any:
        rng = self._rng
        value: Any
        if key in _SLOT_RANGES:
            value = rng.randrange(*_SLOT_RANGES[key])
        elif key in ("oe1", "oe2", "oe3"):
            value = _code(rng, rng.choice(VOCAB["part_number_patterns"]))
        elif key == "oem":
            value = _code(rng, "99999-AAA-A99")
        elif key in ("ap_brand", "ap_brand2", "ap_brand3"):
            brands = rng.sample(VOCAB["appliance_brands"], 3)
            self.update(ap_brand=brands[0], ap_brand2=brands[1], ap_brand3=brands[2])
            return self[key]
        elif key == "Warranty":
            value = rng.choice(VOCAB["warranties"]).capitalize()
        else:
            value = rng.choice(_SLOT_CHOICES[key])
        self[key] = value
        return value


def _make_item(rng: Random) -> dict[str, Any]:
    cat = _CATEGORIES[bisect.bisect_right(_CUM_WEIGHTS, rng.random() * _CUM_WEIGHTS[-1])]
    cat_name = cat["name"]
    kind = cat["types"][rng.randrange(len(cat["types"]))]
    noun = kind["noun"]
    brand = cat["brands"][rng.randrange(len(cat["brands"]))]
    if cat_name == "Appliances" and rng.random() < 0.6:
        model = _code(rng, rng.choice(VOCAB["appliance_patterns"]))
    else:
        model = _code(rng, VOCAB["model_patterns"][rng.randrange(len(VOCAB["model_patterns"]))])
    tricky = rng.random() < TRICKY_RATE
    price = _price(rng, kind["median"], kind["sigma"])
    compat = _compat(rng, cat_name) if cat_name in ("Automotive", "Cell_Phones_and_Accessories",
                                                   "Appliances") and rng.random() < 0.7 else ""
    adj = rng.choice(VOCAB["adjectives"])
    title = _title(rng, brand, model, noun, kind["qualifiers"], compat, adj)
    if tricky and rng.random() < 0.5:
        title = f"{title} {rng.choice(_TRICKY['title_bits'])}"
    weight_lbs, weight = _weight(rng, kind["pounds"])
    dims = _dims(rng, weight_lbs)
    color = rng.choice(VOCAB["colors"])
    material = rng.choice(cat["materials"])
    slots = _Slots(rng)
    slots.update(brand=brand, noun=noun, nl=noun.lower(), model=model, material=material,
                 Material=material[:1].upper() + material[1:], color=color, color_l=color.lower(),
                 weight=weight, dims=dims, adj_l=adj.lower(), fits=compat[4:],
                 compat=compat or "for most standard applications")

    # Details first: the course appends them after description and features, so their length decides
    # how many feature sentences fit before the ~160-token cut.
    has_details = rng.random() >= 0.02
    details_obj = _details(rng, cat_name, compat, slots)
    if tricky:
        details_obj["Note"] = rng.choice(_TRICKY["quotes"]) + "\n" + rng.choice(_TRICKY["unicode"])
    # Tricky ones are pretty-printed, with real newlines inside.
    details = json.dumps(details_obj, ensure_ascii=False, indent=2 if tricky else None) if has_details else None
    scrubbed_details = _scrub_details(details) if details is not None and not tricky else ""

    title_text = title if tricky else (_scrub(title) or title)
    target = int(min(930.0, max(230.0, rng.gauss(535.0, 140.0))))  # length of text (title + body)
    room = max(80, target - len(title_text) - 1)
    budget = max(0.35 * room, room - rng.uniform(0.15, 1.0) * len(scrubbed_details))

    # Features: a lazy partial shuffle of type- and category-specific sentences, then generic ones.
    pool = kind["features"] + cat["sentences"]
    parts = [rng.choice(VOCAB["descriptions"]).format_map(slots)]
    size = len(parts[0])
    j = 0
    while j < len(pool) and size < budget:
        k = rng.randrange(j, len(pool))
        pool[j], pool[k] = pool[k], pool[j]
        parts.append(pool[j].format_map(slots))
        size += len(parts[-1]) + 1
        j += 1
    contents = "\n".join(parts) + "\n" + (scrubbed_details + "\n" if scrubbed_details else "")
    if len(contents) < room + 40:  # pad short texts (the course drops items under 150 tokens)
        for sentence in pool[j:] + rng.sample(VOCAB["generic_sentences"], 4):
            contents += sentence.format_map(slots) + "\n"
            if len(contents) >= room + 40:
                break
    body = _scrub(contents)
    if tricky:
        bits = [rng.choice(_TRICKY["unicode"])]
        for key, p in (("quotes", 0.7), ("backslashes", 0.6), ("dollars", 0.7)):
            if rng.random() < p:
                bits.append(rng.choice(_TRICKY[key]))
        rng.shuffle(bits)
        cut = body.find(". ") + 2 if ". " in body else 0
        inserted = " ".join(bits) + " "
        body = body[:cut] + inserted + body[cut:]
        room = max(room, cut + len(inserted) + 40)
    if len(body) > room:
        cut_at = body.rfind(" ", 0, room)
        body = body[: cut_at if cut_at > room // 2 else room].rstrip(" ,;")
    prompt = make_prompt(f"{title_text}\n{body}", price)
    return {"title": title, "price": price, "details": details, "prompt": prompt,
            "token_count": max(1, round(len(prompt) / 4)), "include": True, "category": cat_name}


def generate_items(n: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    """Yield ``n`` items as dicts with the keys of :data:`FIELDS`; item ``i`` depends only on ``(seed, i)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = _Rng()
    base = (int(seed) % (1 << 64)) << 64
    for i in range(n):
        rng.seed(base | i)
        yield _make_item(rng)


class Item:
    """Pickles as the course's ``items.Item`` (a global that need not be importable), with its attribute dict."""

    __module__ = "items"

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.__dict__.update(attrs)


def write_pickle(path: str | os.PathLike[str], n: int, seed: int = 42) -> int:
    """Write ``generate_items(n, seed)`` with :func:`pickle.dump` (protocol 4) as a list of ``items.Item``.

    Atomic: written to a temporary file beside ``path``, then moved into place. The parent must exist.
    """
    items = [Item(d) for d in generate_items(n, seed)]
    # The pickler checks that ``items.Item`` imports as this very class: make it so, for the dump only.
    module = types.ModuleType("items")
    module.Item = Item  # type: ignore[attr-defined]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    saved, sys.modules["items"] = sys.modules.get("items"), module
    try:
        with open(tmp, "xb") as f:
            pickle.dump(items, f, protocol=4)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if saved is None:
            sys.modules.pop("items", None)
        else:
            sys.modules["items"] = saved
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/sample.py", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="number of items (default: 600)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--out", type=Path, default=Path("data/sample/items.pkl"),
                        help="output pickle (default: data/sample/items.pkl)")
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("--n must be >= 0")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = write_pickle(args.out, args.n, args.seed)
    size = args.out.stat().st_size
    print(f"wrote {count:,} items (seed {args.seed}) to {args.out} ({size / 1e6:.1f} MB, {size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
