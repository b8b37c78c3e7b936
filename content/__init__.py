"""Content shipped with the package: modules, messages, images (data, not code)."""

from pathlib import Path

CONTENT_DIR = Path(__file__).resolve().parent
