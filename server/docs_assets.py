"""API docs that work with no network: `/docs` (Swagger UI) and `/redoc` served from assets shipped by
the `fastapi-offline` package (MIT; Swagger UI and ReDoc themselves are Apache-2.0 and MIT), not from a
CDN. Also the small static routes a browser asks for: `/favicon.ico`.

The OpenAPI document declares the bearer scheme (`Authorization: Bearer <RAG_API_KEYS key>`) so that
Swagger UI's "Authorize" button sends the key with every request it tries.
"""
from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
STATIC = Path(__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
BEARER = {"type": "http", "scheme": "bearer",
          "description": "One of the keys in RAG_API_KEYS. Needed for document writes and the feedback export; "
                         "for reads too when RAG_PROTECT_READS=true."}


def register(app: FastAPI) -> None:
    """Call on an app created with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    oauth_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API docs",
            oauth2_redirect_url=oauth_redirect,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
            # No call to the online validator; keys typed into "Authorize" stay while the tab is open.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True})

    @app.get(oauth_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API reference",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url="/favicon.ico",
                              with_google_fonts=False)
        # ReDoc's "powered by" logo is an image on its CDN (hidden when it fails to load): keep images local,
        # so the page never reaches out.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})


def add_bearer_scheme(spec: dict) -> dict:
    """Declare the bearer scheme and mark every API operation as accepting it (optional where reads are open:
    the empty requirement `{}` says a request without a key may be allowed)."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = BEARER
    for operations in spec.get("paths", {}).values():
        for op in operations.values():
            if isinstance(op, dict):
                op.setdefault("security", [{"bearerAuth": []}, {}])
    return spec
