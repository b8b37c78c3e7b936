"""Content shipped with the package: modules, messages, images (data, not code)."""

from __future__ import annotations

from pathlib import Path

from flows.catalog import (
    AREAS_FILE,
    COMMUNITY_FILE,
    IMAGES_DIR,
    MESSAGES_FILE,
    MODULES_DIR,
    ROUTING_FILE,
    SCAM_FILE,
    SURVEYS_FILE,
    ContentFiles,
)

CONTENT_DIR = Path(__file__).resolve().parent


def read_content(root: Path = CONTENT_DIR) -> ContentFiles:
    """Read a content folder (messages, modules, image names) for :mod:`flows.catalog`."""
    fixed = (MESSAGES_FILE, ROUTING_FILE, SCAM_FILE, AREAS_FILE, COMMUNITY_FILE, SURVEYS_FILE)
    paths = [*(root / name for name in fixed), *sorted((root / MODULES_DIR).glob("*.yaml"))]
    images = root / IMAGES_DIR
    return ContentFiles(
        name=root.name,
        files={p.relative_to(root).as_posix(): p.read_bytes() for p in paths if p.is_file()},
        images=frozenset(p.name for p in images.iterdir() if p.is_file()) if images.is_dir() else frozenset(),
    )
