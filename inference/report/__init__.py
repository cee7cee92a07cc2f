"""Seeing and judging a capture: overlays, 3D views, plots and an HTML index (no bpy)."""
