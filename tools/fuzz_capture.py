"""Fuzz the capture reader for a while: byte and member mutations of a valid capture (tools/capture_mutations.py).

    python tools/fuzz_capture.py --minutes 2 [--seed 1] [--family both|bytes|members] [--reader FILE.py]

Prints the counts (mutations tried, clean reader errors, valid reads, foreign exceptions by type with one
example each). Each valid read also goes through the importer's arithmetic (``importer_arithmetic``; skip with
``--no-import-check``), whose exceptions count as foreign too. Exit status 1 if any exception other than the
reader's own ``CaptureFormatError`` escaped. ``--reader`` loads another copy of ``core/capture.py`` (e.g. an
older one saved elsewhere) in its place, to measure a before/after figure with the same mutators.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_mutations import importer_arithmetic, run_mutations  # noqa: E402


def load_reader(path: str | None):
    """The capture module to fuzz: handcap.core.capture, or a copy of it loaded as a sibling module."""
    if path is None:
        from handcap.core import capture

        return capture
    import handcap.core  # noqa: F401 - the copy's relative imports (.keypoints) resolve inside this package

    spec = importlib.util.spec_from_file_location("handcap.core._fuzzed_capture", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    limit = parser.add_mutually_exclusive_group(required=True)
    limit.add_argument("--minutes", type=float, help="run for this long")
    limit.add_argument("--count", type=int, help="run this many mutations (deterministic for a seed)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--family", choices=("both", "bytes", "members"), default="both")
    parser.add_argument("--reader", help="a copy of core/capture.py to fuzz instead of the installed one")
    parser.add_argument("--no-import-check", action="store_true", help="skip the importer arithmetic on valid reads")
    args = parser.parse_args(argv)
    if (args.minutes is not None and args.minutes <= 0) or (args.count is not None and args.count <= 0):
        parser.error("--minutes / --count must be positive")
    mod = load_reader(args.reader)
    end = time.monotonic() + 60.0 * args.minutes if args.minutes is not None else None
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        counts = run_mutations(
            mod,
            Path(tmp),
            args.count,
            args.seed,
            args.family,
            (lambda: time.monotonic() > end) if end else None,
            None if args.no_import_check else importer_arithmetic,
        )
    took = time.monotonic() - start
    print(f"reader: {mod.__file__}  seed {args.seed}  family {args.family}  {took:.1f} s")
    print(counts.summary())
    return 1 if counts.foreign_total else 0


if __name__ == "__main__":
    sys.exit(main())
