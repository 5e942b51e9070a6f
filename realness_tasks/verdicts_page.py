"""The verdicts page: a small read-mostly web app that the Airflow plugin mounts in the api-server.

``create_app`` builds a FastAPI app with no Airflow import: the plugin
(``plugins/realness_verdicts_plugin.py``) passes Airflow's own authentication dependency and an
:class:`AirflowRuns` client, so every route is behind Airflow's login and runs are triggered
through Airflow's REST API with the caller's own token (Airflow checks their right to trigger).

Routes (relative to the mount point, links are relative so the app works behind any prefix):

- ``GET /``: the latest verdicts (``latest_verdicts``), filterable by verdict, date range, model
  version and source prefix, sortable by fake probability, paginated; a chart of the daily fake
  rate per model version; each row links to its report.
- ``GET /report?video_id=&model_version=``: the stored HTML report of a verdict.
- ``POST /upload``: "check one video now": a size-limited, type-sniffed upload put under
  ``<landing_prefix>uploads/``, then an on-demand ``realness_ingest`` run (scoring follows through
  the face-shards asset); redirects to ``/check``. A browser's upload must carry the form's
  :func:`upload_token`.
- ``GET /check?source_uri=&run_id=``: that upload's progress, then its verdict and report.

The pages' HTML, which escapes every value that comes from object keys, video names or the
database, is ``realness_tasks.verdicts_page_html``; this module serves it and handles uploads,
which are protected against cross-site request forgery (:func:`upload_token`). Neither imports
anything heavy: OpenCV comes with the first upload, matplotlib with the first chart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import posixpath
import re
import tempfile
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from realness_tasks import queries
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database, DatabaseNotMigrated
from realness_tasks.settings import ConfigurationError
from realness_tasks.storage import open_store
from realness_tasks.verdicts_page_html import (UPLOAD_TOKEN_FIELD, Filters, fake_rate_chart, render_check,
                                               render_list, video_name)

log = logging.getLogger(__name__)

INGEST_DAG = "realness_ingest"
UPLOAD_CHUNK = 1 << 20
# Airflow's session cookie (``base_auth_manager.COOKIE_NAME_JWT_TOKEN``, which the plugin passes on).
SESSION_COOKIE = "_token"


class UploadRejected(ValueError):
    """An upload that is not accepted; the message is shown to the user, with ``status`` as the HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def verdict_rows(db: Database, store_root: str, filters: Filters, page_size: int) -> tuple[list[dict], int]:
    """One page of ``latest_verdicts`` matching ``filters``, and how many match in all.

    A source prefix without a scheme is taken relative to the store root (``landing/demo/``).
    """
    prefix = filters.prefix
    if prefix and "://" not in prefix:
        prefix = f"{store_root.rstrip('/')}/{prefix}"
    return queries.latest_verdicts_page(db, verdict=filters.verdict, date_from=filters.date_from,
                                        date_to=filters.date_to, model_version=filters.model_version,
                                        source_prefix=prefix, order=filters.sort, limit=page_size,
                                        offset=(filters.page - 1) * page_size)


def daily_fake_rates(db: Database, filters: Filters) -> dict[str, list[tuple[str, float]]]:
    """model version -> [(day, fakes / videos with a score)] from ``daily_summary`` within the date filter."""
    rates: dict[str, list[tuple[str, float]]] = {}
    for row in queries.daily_summary(db, filters.date_from, filters.date_to):
        scored = row["fakes"] + row["real"] + row["uncertain"]
        rates.setdefault(row["model_version"], []).append((row["day"], row["fakes"] / scored))
    return rates


def safe_upload_name(filename: str | None) -> str:
    """The uploaded file's base name reduced to letters, digits and ``._-`` (keys stay plain)."""
    name = posixpath.basename((filename or "").replace("\\", "/"))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "upload"


def upload_token(session_token: str) -> str:
    """The upload form's anti-forgery token for the session whose credential is ``session_token``.

    A browser adds Airflow's session cookie to requests to the api-server that other pages make:
    ``SameSite=Lax`` keeps it off a POST from another *site*, but not from another host of the same
    site (a sibling subdomain), nor in a browser that ignores the attribute. So the form also carries
    this token, and the upload is refused unless it matches the cookie sent with it. Another site can neither read the token
    (same-origin policy) nor compute it (it never sees the cookie). It is an HMAC keyed by the
    session's own JWT: stateless, so it needs neither a session store, which a plugin of the
    api-server does not have, nor a secret shared by the api-server's workers; and it still holds
    where a proxy rewrites ``Host`` or a browser leaves out ``Origin``/``Referer``, which an
    origin check depends on. A form opened before Airflow renewed the session cookie is refused
    too: reloading the page gives a fresh one.
    """
    return hmac.new(session_token.encode(), b"realness verdicts page: upload", hashlib.sha256).hexdigest()


def bearer_authenticated(request) -> bool:
    """Whether Airflow authenticates the request by its ``Authorization: Bearer`` header (which wins over
    the cookie): a header that no other site can make a browser send, so such a request cannot be forged."""
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def receive_upload(source: BinaryIO, max_bytes: int, workdir: Path) -> tuple[Path, str]:
    """Copy the uploaded file into ``workdir``; returns the copy and its sniffed container.

    Raises :class:`UploadRejected` for an empty file, one that is not a video container (judged by
    its first bytes, before anything is copied) or one over ``max_bytes``; the caller's temporary
    directory then leaves nothing behind.
    """
    from realness_tasks.frames import HEAD_BYTES, sniff_container   # OpenCV: only when a video comes in

    head = source.read(HEAD_BYTES)
    if not head:
        raise UploadRejected("the file is empty", 415)
    container = sniff_container(head)
    if container is None:
        raise UploadRejected("the file is not a video (MP4, MOV, AVI, MKV or WebM)", 415)
    path = workdir / "upload"
    size = 0
    with path.open("wb") as sink:
        for chunk in itertools.chain([head], iter(lambda: source.read(UPLOAD_CHUNK), b"")):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            sink.write(chunk)
    return path, container


def too_large(max_bytes: int) -> UploadRejected:
    """The 413 rejection of an upload over ``max_bytes``, whether its declared size or the bytes read exceed it."""
    return UploadRejected(f"the file is larger than the {max_bytes / 2**20:.0f} MiB limit", 413)


class AirflowRuns:
    """Triggers and follows DAG runs through Airflow's REST API (v2), as the calling user.

    The caller's credential (``Authorization`` header or the UI's ``_token`` cookie) is passed
    on, so Airflow decides whether this user may trigger the DAG. ``base_url`` is where the
    api-server reaches that API itself (``REALNESS_REPORT_AIRFLOW_API_URL``, else Airflow's
    ``[api] base_url``): never the address the request came to, which behind a proxy is the
    proxy's, unreachable from inside the api-server's container.
    """

    def __init__(self, base_url: str | None, cookie_name: str = SESSION_COOKIE):
        self.base_url = base_url.rstrip("/") if base_url else None
        self.cookie_name = cookie_name

    def _api(self, request) -> str:
        if not self.base_url:
            raise HTTPException(503, "the verdicts page does not know where Airflow's REST API is: set "
                                     "REALNESS_REPORT_AIRFLOW_API_URL (or Airflow's [api] base_url) for the api-server")
        return f"{self.base_url}/api/v2/dags"

    def _headers(self, request) -> dict[str, str]:
        auth = request.headers.get("authorization")
        token = request.cookies.get(self.cookie_name)
        return {"Authorization": auth} if auth else {"Authorization": f"Bearer {token}"} if token else {}

    async def trigger(self, request, dag_id: str, conf: dict) -> str:
        import httpx

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(f"{self._api(request)}/{dag_id}/dagRuns",
                                         json={"logical_date": None, "conf": conf}, headers=self._headers(request))
        response.raise_for_status()
        return response.json()["dag_run_id"]

    async def state(self, request, dag_id: str, run_id: str) -> str:
        import httpx

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{self._api(request)}/{dag_id}/dagRuns/{run_id}",
                                        headers=self._headers(request))
        response.raise_for_status()
        return response.json()["state"]


REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def create_app(load_config: Callable[[], RealnessConfig], authenticate: Callable, runs: AirflowRuns,
               session_cookie: str = SESSION_COOKIE):
    """The FastAPI app; ``authenticate`` is a FastAPI dependency that refuses unauthenticated requests,
    ``session_cookie`` the name of the cookie that carries the UI's session (see :func:`upload_token`).

    The configuration and a read-only database handle (``Database(url, migrate=False)``: the page's
    role may only read) are made on the first request that succeeds and kept for the process: not a
    connection lookup and an engine per request. A configuration or database the page cannot use
    answers 503 with the reason.

    (FastAPI resolves the handlers' annotations in this module's namespace: hence its imports at the top.)
    """
    app = FastAPI(title="Realness verdicts", dependencies=[Depends(authenticate)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    opened: list[tuple[RealnessConfig, Database]] = []
    opening = threading.Lock()

    def resources() -> tuple[RealnessConfig, Database]:
        with opening:
            if not opened:
                try:
                    cfg = load_config()
                    opened.append((cfg, Database(cfg.resolved_database_url, migrate=False)))
                except (ConfigurationError, DatabaseNotMigrated) as exc:
                    raise HTTPException(503, f"the verdicts page is not configured: {exc}") from None
            return opened[0]

    def form_token(request: Request) -> str:
        """The upload token of the request's session; empty for a caller with no session cookie (a script
        with a Bearer token, which needs none)."""
        session = request.cookies.get(session_cookie)
        return upload_token(session) if session else ""

    def list_page(filters: Filters, token: str, message: str = "") -> str:
        cfg, db = resources()
        rows, total = verdict_rows(db, cfg.resolved_store_uri, filters, cfg.report.page_size)
        versions = queries.versions_with_verdicts(db)
        rates = daily_fake_rates(db, filters)
        return render_list(rows, total, filters, cfg.report.page_size, versions,
                           fake_rate_chart(rates) if rates else None, token, message)

    @app.get("/", response_class=HTMLResponse)
    async def verdicts_page(request: Request) -> str:
        try:
            filters = Filters.parse(dict(request.query_params))
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        return await asyncio.to_thread(list_page, filters, form_token(request))

    def stored_report(video_id: str, model_version: str) -> str:
        cfg, db = resources()
        uri = queries.report_uri(db, video_id, model_version)
        if not uri:
            raise HTTPException(404, "no report for this verdict (realness report VIDEO_ID writes one)")
        store = open_store(cfg.resolved_store_uri, cfg.s3)
        return store.get_bytes(store.key_for(uri)).decode("utf-8")

    @app.get("/report", response_class=HTMLResponse)
    async def report(video_id: str, model_version: str) -> HTMLResponse:
        page = await asyncio.to_thread(stored_report, video_id, model_version)
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_POLICY})

    @app.post("/upload")
    async def upload(request: Request, video: UploadFile, token: str = Form("", alias=UPLOAD_TOKEN_FIELD)) -> Any:
        expected = form_token(request)
        if not bearer_authenticated(request) and not (expected and hmac.compare_digest(token, expected)):
            raise HTTPException(403, "upload refused: the form does not belong to this session (a request from "
                                     "another site, or a page opened before the session was renewed: reload it)")
        cfg, _ = await asyncio.to_thread(resources)
        name = safe_upload_name(video.filename)
        key = f"{cfg.landing_prefix}uploads/{datetime.now(timezone.utc):%Y-%m-%d}/{uuid.uuid4().hex[:12]}-{name}"

        declared = int(request.headers.get("content-length") or 0)
        with tempfile.TemporaryDirectory(prefix="realness-upload-") as workdir:
            try:
                if declared > cfg.report.upload_max_bytes + UPLOAD_CHUNK:   # the form's own fields are small
                    raise too_large(cfg.report.upload_max_bytes)
                path, _ = await asyncio.to_thread(receive_upload, video.file, cfg.report.upload_max_bytes,
                                                  Path(workdir))
            except UploadRejected as exc:
                page = await asyncio.to_thread(list_page, Filters(), expected, f"{name} was not accepted: {exc}")
                return HTMLResponse(page, status_code=exc.status)
            store = open_store(cfg.resolved_store_uri, cfg.s3)
            await asyncio.to_thread(store.upload, path, key)
        source_uri = store.uri_for(key)
        run_id = await runs.trigger(request, INGEST_DAG, {})
        log.info("upload %s -> %s, ingest run %s", name, source_uri, run_id)
        return RedirectResponse("check?" + urlencode({"source_uri": source_uri, "run_id": run_id}), status_code=303)

    def upload_progress(source_uri: str) -> tuple[str | None, dict | None]:
        _, db = resources()
        verdict = queries.latest_verdicts_of(db, source_uri)
        return queries.ledger_status(db, source_uri), (verdict[0] if verdict else None)

    @app.get("/check", response_class=HTMLResponse)
    async def check(request: Request, source_uri: str, run_id: str) -> str:
        state = await runs.state(request, INGEST_DAG, run_id)
        ledger_status, verdict = await asyncio.to_thread(upload_progress, source_uri)
        return render_check(video_name(source_uri, ""), state, ledger_status, verdict)

    return app
