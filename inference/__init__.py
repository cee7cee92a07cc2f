"""Pixels -> capture: hand landmarks, hand model fit (torch, numpy, OpenCV; never bpy)."""

import os

# OpenMP threads that spin while waiting collapse throughput as soon as another thread (our frame decoder,
# Blender, other processes) wants a core: torch's landmark passes ran 4-5x slower on a busy 2-core machine.
# Passive waiting avoids that; it only takes effect if set before torch is first imported, and a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
