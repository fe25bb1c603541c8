"""The reference portal (DESIGN §10): static files served at `/` by the query service itself.

Nothing here reads the rollups: the page reads the public v1 API like any other client. What the API has no
route for is served beside the files: the page's settings (`config.json`), plotly.js from the `plotly` wheel
(no CDN: the portal must work in a closed network), and the units' coordinates from `vietnamadminunits`.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from importlib import resources
from pathlib import Path

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response

from shared.hierarchy import Edition
from shared.settings import QuerySettings

STATIC = Path(__file__).with_name("static")
# The files change only with a new release; plotly.js is 4.6 MB, worth keeping a day.
LONG_CACHE = {"Cache-Control": "public, max-age=86400"}
SHORT_CACHE = {"Cache-Control": "no-cache"}  # revalidated by ETag: a new release shows at once

# (edition, the dataset's table, its (code, lat, lon) triples), parents' columns first.
_COORDINATE_COLUMNS = {
    Edition.LEGACY: ("admin_units_legacy", (("provinceCode", "provinceLat", "provinceLon"),
                                            ("districtCode", "districtLat", "districtLon"),
                                            ("wardCode", "wardLat", "wardLon"))),
    Edition.E2025: ("admin_units", (("provinceCode", "provinceLat", "provinceLon"),
                                    ("wardCode", "wardLat", "wardLon"))),
}


def plotly_js() -> Path:
    """plotly.js as the `plotly` wheel bundles it (pinned in pyproject.toml)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


@cache
def coordinates(edition: Edition) -> bytes:
    """`{"code": [lat, lon], …}` of every unit of `edition` that the dataset places (the nation it does not)."""
    table, triples = _COORDINATE_COLUMNS[edition]
    columns = ", ".join(column for triple in triples for column in triple)
    found: dict[str, list[float]] = {}
    db_path = resources.files("vietnamadminunits") / "data" / "dataset.db"
    with resources.as_file(db_path) as path, sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for row in db.execute(f"SELECT {columns} FROM {table}"):
            for i in range(0, len(row), 3):
                code, lat, lon = row[i : i + 3]
                if code and lat is not None and lon is not None and code not in found:
                    found[code] = [round(lat, 4), round(lon, 4)]
    return orjson.dumps(found)


def mount_portal(app: FastAPI, settings: QuerySettings) -> None:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=SHORT_CACHE)

    @router.get("/portal/config.json")
    async def config() -> Response:
        body = {"anonymous_read": settings.anonymous_read, "synthetic": settings.portal_synthetic}
        return Response(orjson.dumps(body), media_type="application/json", headers=SHORT_CACHE)

    @router.get("/portal/vendor/plotly.min.js")
    async def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript", headers=LONG_CACHE)

    @router.get("/portal/coordinates/{edition}.json")
    def unit_coordinates(edition: Edition) -> Response:  # built once, in a worker thread: not on the loop
        return Response(coordinates(edition), media_type="application/json", headers=LONG_CACHE)

    app.include_router(router)
    app.mount("/portal", StaticFiles(directory=STATIC), name="portal")
