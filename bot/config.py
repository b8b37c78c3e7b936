"""Settings from environment variables (see the README's configuration table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from content import CONTENT_DIR
from storage.db import default_url

_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    auto_upgrade: bool
    content_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        data_dir = Path(environ.get("HOCVUSO_DATA_DIR", "data"))
        return cls(
            data_dir=data_dir,
            database_url=environ.get("HOCVUSO_DATABASE_URL") or default_url(data_dir),
            auto_upgrade=environ.get("HOCVUSO_AUTO_UPGRADE", "1").strip().lower() not in _FALSE,
            content_dir=Path(environ.get("HOCVUSO_CONTENT_DIR") or CONTENT_DIR),
        )
