"""The verdicts page as deployed: served by ``airflow api-server`` with the plugin from ``plugins/``, the upload
run by Airflow's own scheduler, dag-processor and LocalExecutor on a PostgreSQL metadata database
(tests/airflow_stack.py), with a champion model in the store, the whole chain driven from Chromium.

Airflow runs with the FAB auth manager, as docker-compose.yml deploys it: the user is an FAB user
with the ``User`` role and logs in the way the UI does (FAB's ``/auth/token``, the token as the ``_token``
cookie). The uploaded video is followed from the page's form, through the ``realness_ingest`` run the page
triggers through the REST API and the ``realness_score`` run that the face-shards asset starts, to the
verdict on the page's progress view; ``live-verdict.png`` in the artefacts folder shows it.
tests/test_verdicts_page.py covers the page's details on a plain uvicorn server.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from bench.airflow_stack import FINAL_RUN_STATES, airflow_stack
from realness_tasks import samples
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import open_store
from realness_tasks.verdicts_page_html import UPLOAD_TOKEN_FIELD
from tests.test_reports import champion_files  # noqa: F401 - fixture
from tests.test_scheduler import INGEST, RUN_TIMEOUT_S, SCORE, realness_settings, verdict_database  # noqa: F401
from tests.test_scoring import register_champion
from tests.test_verdicts_page import browser, screenshot  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

USER, PASSWORD = "analyst", "not-a-secret"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"   # docker-compose.yml's


def test_an_upload_through_the_page_reaches_its_verdict_in_a_running_airflow(
        postgres_server_url, verdict_database, champion_files, browser, tmp_path):  # noqa: F811
    settings = realness_settings(tmp_path, verdict_database)
    cfg = RealnessConfig.from_env(settings)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    register_champion(cfg, store, champion_files / "model.tflite", "v1", 0.5, datetime(2025, 3, 1))
    fab = {"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}
    video = samples.face_video(tmp_path / "clip.mp4", samples.sample_photos()[0].image, seconds=1.0, fps=8).path

    with airflow_stack(tmp_path, postgres_server_url, env={**settings, **fab}) as stack:
        stack.airflow("users", "create", "--username", USER, "--password", PASSWORD, "--role", "User",
                      "--firstname", "Ana", "--lastname", "Lyst", "--email", f"{USER}@example.org")
        page_url = f"{stack.api_url}/realness/"
        assert httpx.get(page_url).status_code == 401   # the api-server itself refuses, not the UI's catch-all
        token = httpx.post(f"{stack.api_url}/auth/token", json={"username": USER, "password": PASSWORD}).json()
        token = token["access_token"]
        forged = httpx.post(page_url + "upload", files={"video": ("x.mp4", video.read_bytes())},
                            cookies={"_token": token}, headers={"Origin": "https://elsewhere.example"})
        assert forged.status_code == 403 and not list(store.list(f"{cfg.landing_prefix}uploads/"))

        stack.wait_for_dags(INGEST, SCORE)
        # Unpausing creates the cron interval's own ingest run: let it pass (it finds an empty landing)
        # so that the upload is ingested by the run the page triggers (max_active_runs=1 queues it after).
        for dag_id in (SCORE, INGEST):   # through the REST API as the user: quicker than the CLI
            httpx.patch(f"{stack.api_url}/api/v2/dags/{dag_id}", json={"is_paused": False},
                        headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        stack.wait_for("the scheduled ingest run to finish", lambda: stack.query(
            "SELECT 1 FROM dag_run WHERE dag_id = :d AND run_type = 'scheduled' AND state IN ('success', 'failed')",
            d=INGEST), RUN_TIMEOUT_S)

        context = browser.new_context(viewport={"width": 1100, "height": 700})
        context.add_cookies([{"name": "_token", "value": token, "url": stack.api_url}])
        page = context.new_page()
        page.goto(page_url)
        assert page.locator(f"#upload input[name={UPLOAD_TOKEN_FIELD}]").count() == 1
        page.set_input_files("#upload input[type=file]", str(video))
        page.click("#upload button")
        page.wait_for_url("**/realness/check?*")
        query = parse_qs(urlparse(page.url).query)
        [source_uri], [run_id] = query["source_uri"], query["run_id"]
        assert store.key_for(source_uri).startswith(f"{cfg.landing_prefix}uploads/")
        [run] = stack.query("SELECT run_type, triggering_user_name FROM dag_run WHERE dag_id = :d AND run_id = :r",
                            d=INGEST, r=run_id)
        assert run == {"run_type": "manual", "triggering_user_name": USER}   # triggered as the caller

        db = Database(verdict_database)
        try:
            def verdict() -> dict | None:
                rows = db.query("SELECT verdict, p_fake FROM latest_verdicts WHERE source_uri = :s", {"s": source_uri})
                failed = stack.query("SELECT dag_id, run_id FROM dag_run WHERE state = 'failed'")
                assert not failed, stack.report(*failed[0].values())
                return rows[0] if rows else None

            decided = stack.wait_for("the upload's verdict", verdict, 2 * RUN_TIMEOUT_S)
            [ledger] = db.query("SELECT status, run_id FROM ingest_ledger WHERE source_uri = :s", {"s": source_uri})
        finally:
            db.dispose()
        assert ledger == {"status": "PUBLISHED", "run_id": run_id}
        assert stack.run_state(INGEST, run_id) in FINAL_RUN_STATES

        page.locator("#verdict").wait_for(timeout=30_000)   # the progress view refreshes every 3 s
        assert page.locator("#verdict").inner_text() == decided["verdict"]
        assert page.locator("#run-state").inner_text() == "success"
        assert f"p_fake {decided['p_fake']:.3f}" in page.locator("dd", has=page.locator("#verdict")).inner_text()
        screenshot(page, "live-verdict")
        page.click("text=all verdicts")
        page.wait_for_load_state()
        [row] = page.locator("tr.verdict-row", has_text=video.name).all()
        assert row.locator(".verdict").inner_text() == decided["verdict"]
        context.close()
