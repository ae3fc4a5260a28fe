"""Put generated text into a Markdown page, between two markers.

The documented tables are written by the code that measures them (the demo,
the benchmarks) into files; this script copies such a file into a page, in
place of what stands between ``<!-- begin NAME -->`` and ``<!-- end NAME
-->``, so that no number is copied by hand:

    python tools/splice.py docs/tutorial.md demo-table snnify-demo/table.md

It refuses a page without both markers, and leaves the page unchanged on any
error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def splice(page: str, name: str, text: str) -> str:
    """``page`` with the part between the markers ``name`` replaced by ``text``.

    Example:
        >>> splice("a\\n<!-- begin t -->\\nold\\n<!-- end t -->\\nb", "t", "new")
        'a\\n<!-- begin t -->\\nnew\\n<!-- end t -->\\nb'
    """
    pattern = re.compile(
        rf"(<!-- begin {re.escape(name)} -->\n).*?(<!-- end {re.escape(name)} -->)",
        re.DOTALL,
    )
    if len(pattern.findall(page)) != 1:
        raise ValueError(
            f"The page needs exactly one '<!-- begin {name} -->' ... "
            f"'<!-- end {name} -->' pair."
        )
    return pattern.sub(
        lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), page
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path, help="the Markdown page to update")
    parser.add_argument("name", help="the name in its begin/end markers")
    parser.add_argument("source", type=Path, help="the file whose text goes in")
    args = parser.parse_args(argv)
    try:
        page = args.page.read_text(encoding="utf-8")
        updated = splice(page, args.name, args.source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"splice: {error}", file=sys.stderr)
        return 1
    args.page.write_text(updated, encoding="utf-8")
    print(f"splice: wrote {args.name!r} from {args.source} into {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
