"""``/docs`` (Swagger UI 5) and ``/redoc`` (ReDoc), served from the ``fastapi-offline``
package's copies of their scripts (MIT; Swagger UI 5 reads FastAPI's OpenAPI 3.1, which the
Swagger UI 4 of ``swagger-ui-bundle`` could not render), so that the API documentation works
offline (FastAPI's default pages load them from a CDN), and without an inline script (their
start-up code is ``/docs/init.js`` and ``/redoc/init.js``), under the Content-Security-Policy
of serve/headers.py."""

from __future__ import annotations

import json
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
#: Swagger UI's and ReDoc's files, as the fastapi-offline package ships them.
ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""


REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{assets}/favicon.png">
<title>{title}</title>
</head>
<body>
<div id="redoc"></div>
<script src="{assets}/redoc.standalone.js"></script>
<script src="/redoc/init.js"></script>
</body>
</html>
"""


def init_script(openapi_url: str) -> str:
    """Swagger UI's start-up (FastAPI's defaults; no validator badge: it would load from
    validator.swagger.io)."""
    options = json.dumps({"url": openapi_url, "dom_id": "#swagger-ui", "layout": "BaseLayout",
                          "deepLinking": True, "showExtensions": True,
                          "showCommonExtensions": True, "validatorUrl": None})
    return (f"window.ui = SwaggerUIBundle(Object.assign({options}, {{presets: "
            "[SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}));\n")


def mount_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc``, their start-up scripts and assets (``app`` must be created
    with ``docs_url=None`` and ``redoc_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=str(ASSET_DIR)), name="docs-assets")
    openapi_url = json.dumps(app.openapi_url or "/openapi.json")
    redoc_page = REDOC_PAGE.format(assets=ASSETS, title=f"{app.title}: API reference")
    redoc_script = (f"Redoc.init({openapi_url}, {{}}, document.getElementById('redoc'));\n")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return HTMLResponse(redoc_page)

    @app.get("/redoc/init.js", include_in_schema=False)
    async def redoc_init() -> Response:
        return Response(redoc_script, media_type="text/javascript")

    page = PAGE.format(assets=ASSETS, title=f"{app.title}: API")
    script = init_script(app.openapi_url or "/openapi.json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(script, media_type="text/javascript")
