"""Copy the benchmark pictures the documentation shows into docs/assets/, or check the copies.

The benchmark scripts write their pictures beside their results (benchmarks/quality/sheet.jpg, ...);
MkDocs only serves files under docs/, so the few pictures the docs show are copied there. After a
benchmark rewrites one of them, run ``python scripts/docs_pictures.py`` and commit the copies;
``--check`` (run by scripts/test.sh before the docs build) fails while a copy is missing or stale.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Pictures under benchmarks/ that the docs show; each is copied to docs/assets/<the same path>.
PICTURES = (
    "benchmarks/quality/sheet.jpg",
    "benchmarks/quality/modes.jpg",
    "benchmarks/quality/sweep/sweep.png",
    "benchmarks/quality/sweep/sweep-summary.png",
    "benchmarks/tiles/print_4096_small.jpg",
    "benchmarks/tiles/print_4096_crop.png",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail if a copy is missing or stale")
    args = parser.parse_args(argv)
    stale = []
    for name in PICTURES:
        source, copy = ROOT / name, ROOT / "docs" / "assets" / name
        if copy.is_file() and copy.read_bytes() == source.read_bytes():
            continue
        if args.check:
            stale.append(name)
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        print(f"copied {name} -> {copy.relative_to(ROOT)}")
    if stale:
        print(f"docs_pictures: stale copies in docs/assets of {', '.join(stale)}; "
              "run 'python scripts/docs_pictures.py' and commit them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
