"""File types HandCap reads and writes, stated once.

Footage extensions (lower case, with the dot): ``inference.sources`` decodes them; Blender's operators,
``convert``, ``farm`` and ``blender -c`` pick inputs by them. Output formats: what ``convert``, ``merge`` and
``farm`` write (``builders.batch``)."""

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm", ".pnm"})
VIDEO_EXTS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS
#: What a batch conversion writes: a .blend, or one export per hand / rig (``builders.export``).
OUTPUT_FORMATS = ("blend", "fbx", "bvh", "glb")
