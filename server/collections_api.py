"""Collections over HTTP: `GET/POST /collections`, `DELETE /collections/{name}`, and every API
route of a named collection under `/collections/{name}/` (`/ask`, `/search`, `/documents`, ...).

The default collection keeps today's URLs (`/ask`, ...). A named collection's routes are the same
route code bound to its own pipeline (an app per collection, made on first use, behind the root
app's edge middleware: Host check, body limits, rate limiting). The server's keys administer
collections; a collection's own key works for it alone.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Mount

from rag.collections import BUILD_SETTINGS, Collections
from rag.errors import RagError
from rag.pipeline import Pipeline

from . import documents_api, errors, query_api
from .auth import Access
from .errors import responses


class CollectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embed_model: Annotated[str, Field(max_length=500)] | None = None
    chunk_size: int | None = Field(None, ge=100, le=20000)
    chunk_overlap: int | None = Field(None, ge=0, le=10)


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    settings: CollectionSettings = Field(default_factory=CollectionSettings,
                                         description=f"Build settings of its own: {', '.join(BUILD_SETTINGS)}.")


class CollectionOut(BaseModel):
    name: str
    created_at: str
    settings: dict
    keys: int


class CollectionCreated(CollectionOut):
    api_key: str = Field(description="The collection's API key: shown once, only its hash is stored.")


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class CollectionRouter:
    """ASGI app mounted at `/collections/{name}`: hands each request to that collection's app."""

    def __init__(self, collections: Collections, metrics):
        self.collections = collections
        self.metrics = metrics
        self._apps: dict[str, FastAPI] = {}

    def forget(self, name: str) -> None:
        self._apps.pop(name, None)

    async def app_for(self, name: str) -> tuple[FastAPI, Pipeline]:
        pipeline = await run_in_threadpool(self.collections.pipeline, name)  # opens (loads) on first use
        app = self._apps.get(name)
        if app is None:
            app = self._apps[name] = self._make(name, pipeline)
        return app, pipeline

    def access(self, name: str) -> Access:
        return Access(self.collections.settings, own_keys=lambda key: self.collections.key_allows(name, key))

    def _make(self, name: str, pipeline: Pipeline) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        errors.install(app)
        access = self.access(name)
        query_api.register(app, pipeline, self.metrics, access)
        documents_api.register(app, pipeline, self.metrics, access)
        return app

    async def __call__(self, scope, receive, send):
        name = scope.get("path_params", {}).get("name", "")
        try:
            app, _ = await self.app_for(name)
        except RagError as exc:
            response = JSONResponse({"detail": str(exc)}, status_code=errors.status_for(exc))
            return await response(scope, receive, send)
        await app(scope, receive, send)


def register(app: FastAPI, collections: Collections, metrics, access: Access) -> CollectionRouter:
    router = CollectionRouter(collections, metrics)

    @app.get("/collections", response_model=CollectionList, dependencies=access.read(), responses=responses(401))
    async def list_collections() -> dict:
        listed = await run_in_threadpool(collections.list)
        return {"collections": [c.public() for c in listed]}

    @app.post("/collections", response_model=CollectionCreated, status_code=201, dependencies=access.write(),
              responses=responses(401, 403, 409, 422, 507))
    async def create_collection(body: CollectionIn) -> dict:
        created, key = await run_in_threadpool(collections.create, body.name,
                                               body.settings.model_dump(exclude_none=True))
        return {**created.public(), "api_key": key}

    @app.delete("/collections/{name}", status_code=204, dependencies=access.write(),
                responses=responses(401, 403, 404, 422))
    async def delete_collection(name: str) -> Response:
        router.forget(name)
        await run_in_threadpool(collections.delete, name)
        return Response(status_code=204)

    app.router.routes.append(Mount("/collections/{name}", app=router))
    return router
