"""Serve plotly.js from the plotly package itself: no CDN, no copy in the repository.

The file is published as ``vendor/plotly-<version>.min.js`` so its version is in its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage
from plotly.offline import get_plotlyjs_version

SOURCE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_JS = f"vendor/plotly-{get_plotlyjs_version()}.min.js"


class _SingleFileStorage(FileSystemStorage):
    def path(self, name: str) -> str:
        return str(SOURCE)


class PlotlyFinder(BaseFinder):
    storage = _SingleFileStorage(location=str(SOURCE.parent))

    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        if path == PLOTLY_JS:
            return [str(SOURCE)] if find_all else str(SOURCE)
        return [] if find_all else None

    def list(self, ignore_patterns: Any) -> Any:
        yield PLOTLY_JS, self.storage
