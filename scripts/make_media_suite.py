"""Build the small benchmark suite from ../shared/media.

Usage: python scripts/make_media_suite.py [MEDIA_DIR] [OUT_DIR] [--short-only]
Defaults: ../shared/media (beside the checkout) and benchmarks/suites/media.
"""

from __future__ import annotations

import sys
from pathlib import Path

from soul.bench.media_suite import build_media_suite

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    media = Path(args[0]) if args else ROOT.parent / "shared" / "media"
    out = Path(args[1]) if len(args) > 1 else ROOT / "benchmarks" / "suites" / "media"
    cases = build_media_suite(media, out, include_long="--short-only" not in argv)
    for c in cases:
        print(f"{c.id:28s} {c.category:18s} {'long' if c.long else 'short'}")
    print(f"{len(cases)} cases in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
