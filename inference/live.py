"""Live preview worker: a camera's hands as one JSON line per frame (never run in Blender).

``python -m handcap.inference.live SOURCE``: a camera index or path, or with ``--virtual`` a video file
played at its own frame rate.

Each processed frame is one JSON line on stdout (``core.live_record.LiveFrame``), which the modal operator
``handcap.live_preview`` reads from a timer and applies to the rig. The stages are in ``live_stages``; by
default they run as a two-process pipeline (``live_pipeline``), with ``--sequential`` in this process.
The virtual camera is how the live path is tested and benchmarked.
"""

from __future__ import annotations

import argparse
import sys

from ..core.live_record import LiveFrame
from ..core.request import MAX_HANDS
from .live_stages import LiveOptions, LiveSession, OneEuro, run


def main(argv: list[str] | None = None) -> int:
    import signal

    from .live_pipeline import run_pipelined
    from .sources import SourceError, open_live

    p = argparse.ArgumentParser(prog="python -m handcap.inference.live", description=__doc__.split("\n")[0])
    p.add_argument("source", help="camera index (0) or stream/video path")
    p.add_argument("--virtual", action="store_true", help="play a video file at its own frame rate")
    p.add_argument("--hands", type=int, choices=range(1, MAX_HANDS + 1), default=2, metavar="N")
    p.add_argument("--model", choices=("builtin", "mano"), default="builtin")
    p.add_argument("--mano-dir")
    p.add_argument("--fov", type=float)
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--sequential", action="store_true", help="one process (no pipeline): for comparison")
    args = p.parse_args(argv)
    opts = LiveOptions(hands=args.hands, model=args.model, mano_dir=args.mano_dir, fov_deg=args.fov)
    # Blender stops the worker with SIGTERM: exit through the finally blocks (they stop the landmark process)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def emit(frame: LiveFrame) -> None:
        sys.stdout.write(frame.to_json() + "\n")
        sys.stdout.flush()

    try:
        if not args.sequential:
            run_pipelined(args.source, args.virtual, opts, emit, args.seconds)
            return 0
        with open_live(args.source, virtual=args.virtual) as source:
            run(source, opts, emit, args.seconds)
    except (SourceError, RuntimeError) as exc:
        print(f"handcap live: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0  # the reader (Blender) has gone
    return 0


__all__ = ["LiveOptions", "LiveSession", "OneEuro", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
