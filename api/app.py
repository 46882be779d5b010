"""The FastAPI application on port 8025: web UI, MailHog API, REST v3, health."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.access import AccessMiddleware, AccessPolicy
from api.deps import AppState
from api.routes import events, health, mailhog, messages, plugins, ui
from pat.bus import Bus, StoreWatcher
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.keys import ApiKeyStore
from pat.store.repository import MessageStore


def create_app(settings: Settings) -> FastAPI:
    """The app; ``AccessConfigError`` if the access settings cannot be used."""
    policy = AccessPolicy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.store_url)
        await migrate(engine)
        store = MessageStore(engine)
        bus = Bus()
        watcher = StoreWatcher(store, bus)
        watcher.start()
        policy.keys = ApiKeyStore(engine)
        app.state.pat = AppState(settings=settings, store=store, bus=bus, watcher=watcher)
        try:
            yield
        finally:
            await watcher.stop()
            await engine.dispose()

    app = FastAPI(title="Pat", version="0.1.0", lifespan=lifespan,
                  openapi_url="/api/v3/openapi.json", docs_url="/api/v3/docs", redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def explain_bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"parameter": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
                     "in": str(err["loc"][0]), "problem": err["msg"]} for err in exc.errors()]
        summary = "; ".join(f"{p['parameter']}: {p['problem']}" for p in problems)
        return JSONResponse(status_code=422,
                            content={"error": f"invalid parameters: {summary}",
                                     "problems": problems})

    app.add_middleware(AccessMiddleware, policy=policy)
    app.include_router(health.router)
    app.include_router(messages.router)
    app.include_router(plugins.router)
    app.include_router(events.router)
    app.include_router(mailhog.router)
    app.include_router(ui.router)
    return app
