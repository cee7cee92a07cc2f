"""Clip libraries on a farm: chunked, resumable conversion (see docs/farm.md).

``jobs``: the units of work as plain functions (a chunk's landmarks, a clip's merge and conversion);
``manifest``: what a run has finished, in ``OUTDIR/.handcap-farm/``; ``driver``: the Ray driver behind
``python -m handcap farm``. Ray is imported only by ``driver`` and only when a farm runs, so everything else
works without it. ``flamenco/`` holds a job type for Flamenco managers, which runs the same pieces through
``blender -b -c handcap convert --chunk-out`` and ``merge``.
"""
