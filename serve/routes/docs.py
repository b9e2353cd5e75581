"""``/docs``: the Swagger UI, served from the ``swagger-ui-bundle`` package, so that the API
documentation works offline (FastAPI's default page loads its scripts from a CDN), and without
an inline script (its start-up code is ``/docs/init.js``), under the same strict
Content-Security-Policy as every page (serve/headers.py)."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon-32x32.png">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
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
    """``/docs``, its start-up script and its assets (``app`` must be created with
    ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    page = PAGE.format(assets=ASSETS, title=f"{app.title}: API")
    script = init_script(app.openapi_url or "/openapi.json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(script, media_type="text/javascript")
