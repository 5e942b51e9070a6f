"""The verdicts page: the plugin's app under uvicorn on localhost, behind Airflow's own ``get_user``.

Tokens come from Airflow's configured auth manager (SimpleAuthManager), as the UI's login would
issue them. DAG runs are recorded by a stand-in for Airflow's REST API: no scheduler runs here,
so an upload is followed as far as its triggered run. The browser tests drive Debian's
``chromium`` through Playwright and skip when either is missing; screenshots go to
``test-artefacts/`` (or ``$REALNESS_TEST_ARTEFACTS``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from realness_tasks import reports, samples
from realness_tasks.verdicts_page import INGEST_DAG, create_app, upload_token
from realness_tasks.verdicts_page_html import UPLOAD_TOKEN_FIELD
from tests.conftest import REQUIRE_SERVICES, ROOT, free_port
from tests.test_reports import champion_files, crops, scored  # noqa: F401 - fixtures

EVIL = "<img src=x onerror=alert(1)>"
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("REALNESS_TEST_ARTEFACTS", ROOT / "test-artefacts"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class RecordingRuns:
    """Stands in for Airflow's REST API: records triggers, reports each run as queued."""

    def __init__(self):
        self.triggered: list[tuple[str, dict, str | None]] = []

    async def trigger(self, request, dag_id: str, conf: dict) -> str:
        self.triggered.append((dag_id, conf, request.cookies.get("_token") or request.headers.get("authorization")))
        return f"manual__{len(self.triggered)}"

    async def state(self, request, dag_id: str, run_id: str) -> str:
        return "queued"


@dataclasses.dataclass
class Site:
    url: str
    token: str
    cfg: object
    store: object
    runs: RecordingRuns

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, cookies={"_token": self.token}, **kwargs)

    def upload(self, name: str, content: bytes, **kwargs) -> httpx.Response:
        """What the page's form posts: the file and the form's token, with the session cookie."""
        return httpx.post(self.url + "upload", files={"video": (name, content)},
                          data={UPLOAD_TOKEN_FIELD: upload_token(self.token)}, cookies={"_token": self.token},
                          **kwargs)


@pytest.fixture
def site(scored, airflow_db):  # noqa: F811 - the imported fixture
    """Three scored videos (one named like an HTML tag), their reports, the app on a free port."""
    import uvicorn
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    cfg, store, db = scored
    cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, page_size=2, upload_max_bytes=200_000))
    reports.write_run_reports(cfg, "run-1")
    reports.write_video_report(cfg, "real")
    db.execute("UPDATE verdicts SET source_uri = :s WHERE video_id = 'real'", {"s": f"s3://landing/{EVIL}.mp4"})
    auth_manager = create_auth_manager()
    auth_manager.init()
    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username="analyst", role="viewer"))
    runs = RecordingRuns()
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: cfg, get_user, runs), host="127.0.0.1",
                                           port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("the page's server did not start")
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{server.config.port}/", token, cfg, store, runs)
    server.should_exit = True
    thread.join(timeout=30)


def rows(page: str) -> list[str]:
    return re.findall(r'<tr class="verdict-row">.*?</tr>', page)


def uploads(site: Site) -> list[str]:
    return [o.key for o in site.store.list(f"{site.cfg.landing_prefix}uploads/")]


def test_an_unauthenticated_request_is_refused(site):
    assert httpx.get(site.url).status_code == 401
    assert httpx.get(site.url, cookies={"_token": "forged"}).status_code == 403
    assert httpx.post(site.url + "upload", files={"video": ("a.mp4", b"x")}).status_code == 401
    assert httpx.get(site.url + "report", params={"video_id": "partly", "model_version": "v1"}).status_code == 401


def test_the_list_filters_sorts_and_pages(site):
    first = site.get("")
    assert first.status_code == 200
    assert len(rows(first.text)) == 2 and "page 1 of 2 (3 videos)" in first.text
    assert "partly.mp4" in rows(first.text)[0] or "guest.mp4" in rows(first.text)[0]   # most fake first
    second = site.get("", params={"page": 2})
    assert len(rows(second.text)) == 1 and "&lt;img src=x" in second.text and EVIL not in second.text
    fakes = site.get("", params={"verdict": "FAKE", "sort": "p_fake_asc"})
    assert [("FAKE" in r) for r in rows(fakes.text)] == [True, True] and "(2 videos)" in fakes.text
    p = [float(v) for v in re.findall(r"</span></td><td>([0-9.]+)</td>", fakes.text)]
    assert p == sorted(p)
    assert "(1 videos)" in site.get("", params={"prefix": "s3://landing/gu"}).text
    assert "(0 videos)" in site.get("", params={"model_version": "v2"}).text
    assert "(0 videos)" in site.get("", params={"date_from": "2099-01-01"}).text
    assert site.get("", params={"date_from": "yesterday"}).status_code == 400
    assert 'alt="daily fake rate per model version"' in first.text


def test_a_row_opens_its_report(site):
    page = site.get("", params={"verdict": "FAKE"}).text
    link = re.search(r'href="(report\?[^"]+)"', page).group(1).replace("&amp;", "&")

    report = site.get(link)

    assert report.status_code == 200 and 'id="verdict">FAKE<' in report.text
    assert report.headers["content-security-policy"].startswith("default-src 'none'")
    assert site.get("report", params={"video_id": "nobody", "model_version": "v1"}).status_code == 404


def test_rejected_uploads_say_why_and_leave_nothing_behind(site):
    not_video = site.upload("notes.mp4", b"just some text" * 50)
    too_big = site.upload("big.mp4", b"\0\0\0\x18ftypmp42" + b"\0" * 300_000)

    assert not_video.status_code == 415 and "notes.mp4 was not accepted: the file is not a video" in not_video.text
    assert too_big.status_code == 413 and "larger than the" in too_big.text
    assert uploads(site) == [] and site.runs.triggered == []


def test_an_accepted_upload_lands_and_triggers_an_ingest_run(site, tmp_path):
    video = samples.face_video(tmp_path / "clip.mp4", samples.sample_photos()[0].image, seconds=0.5, fps=8).path

    assert f'name="{UPLOAD_TOKEN_FIELD}" value="{upload_token(site.token)}"' in site.get("").text   # the form's

    response = site.upload(f"{EVIL}.mp4", video.read_bytes(), follow_redirects=True)

    assert response.status_code == 200 and 'id="run-state">queued<' in response.text
    [key] = uploads(site)
    assert key.endswith("-img_src_x_onerror_alert_1_.mp4") and site.store.get_bytes(key) == video.read_bytes()
    assert site.runs.triggered == [(INGEST_DAG, {}, site.token)]   # as the caller
    assert "Checking" in response.text and "<img src=x" not in response.text


def test_a_cross_site_upload_is_refused_and_lands_nothing(site, tmp_path):
    """Another site's form posts with the victim's session cookie but cannot know the form's token."""
    video = samples.face_video(tmp_path / "clip.mp4", samples.sample_photos()[0].image, seconds=0.5, fps=8).path
    forged = {"cookies": {"_token": site.token}, "headers": {"Origin": "https://elsewhere.example"}}
    no_token = httpx.post(site.url + "upload", files={"video": ("x.mp4", video.read_bytes())}, **forged)
    wrong_token = httpx.post(site.url + "upload", files={"video": ("x.mp4", video.read_bytes())},
                             data={UPLOAD_TOKEN_FIELD: upload_token("another session")}, **forged)

    assert no_token.status_code == wrong_token.status_code == 403
    assert "does not belong to this session" in wrong_token.text
    assert uploads(site) == [] and site.runs.triggered == []

    # A Bearer token is a header no other site can make a browser send: scripts need no form token.
    scripted = httpx.post(site.url + "upload", files={"video": ("x.mp4", video.read_bytes())},
                          headers={"Authorization": f"Bearer {site.token}"})
    assert scripted.status_code == 303 and len(uploads(site)) == 1
    assert site.runs.triggered == [(INGEST_DAG, {}, f"Bearer {site.token}")]


def test_the_page_reads_without_migrating_and_loads_its_configuration_once(tmp_path):
    """The page's role may only read: it opens the database read-only, once per process, and a database
    no writer has migrated yet is a 503 that says so (never a migration, nor a "bad filter")."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database

    url = f"sqlite:///{tmp_path / 'verdicts.db'}"
    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), database_url=url)
    loads = []

    def load_config():
        loads.append(1)
        return cfg

    client = TestClient(create_app(load_config, lambda: None, RecordingRuns()))
    refused = client.get("/")
    assert refused.status_code == 503 and "lacks migrations" in refused.text
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == [], "the page migrated the database"
    engine.dispose()

    Database(url).dispose()   # a writer (airflow-init, a task) migrates
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 200]
    assert client.get("/", params={"date_from": "yesterday"}).status_code == 400
    assert client.get("/report", params={"video_id": "v", "model_version": "m"}).status_code == 404
    assert len(loads) == 2, "one configuration per process (after the refused first try), not one per request"


def test_runs_are_started_at_the_configured_api_never_at_the_requests_host():
    """Behind nginx the request's host is the proxy's (https://airflow.example.com:8443), which the
    api-server's container need not reach: the page calls the API where it is configured, or refuses."""
    from fastapi import HTTPException
    from starlette.requests import Request

    from realness_tasks.verdicts_page import AirflowRuns

    behind_proxy = Request({"type": "http", "method": "POST", "scheme": "https", "path": "/realness/upload",
                            "query_string": b"", "server": ("airflow.example.com", 8443),
                            "headers": [(b"host", b"airflow.example.com:8443")]})
    assert AirflowRuns("http://localhost:8080/")._api(behind_proxy) == "http://localhost:8080/api/v2/dags"
    with pytest.raises(HTTPException) as refused:
        AirflowRuns(None)._api(behind_proxy)
    assert refused.value.status_code == 503 and "REALNESS_REPORT_AIRFLOW_API_URL" in refused.value.detail


# --- in a browser -----------------------------------------------------------------------------------------


@pytest.fixture
def browser():
    missing = None if CHROMIUM.exists() else f"{CHROMIUM} not installed (Debian package 'chromium'; .ci/run installs it)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright (Python package) not installed"
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot(page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_page_in_a_browser(site, browser, tmp_path):
    anonymous = browser.new_page()
    assert anonymous.goto(site.url).status == 401
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_cookies([{"name": "_token", "value": site.token, "url": site.url}])
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(site.url + "?sort=p_fake_asc")
    assert page.locator("tr.verdict-row").count() == 2
    assert page.locator("tr.verdict-row td").first.inner_text() == f"{EVIL}.mp4"   # shown as text
    screenshot(page, "verdicts-page")

    page.select_option("select[name=verdict]", "FAKE")
    page.click("#filters button")
    page.wait_for_load_state()
    assert "verdict=FAKE" in page.url
    assert page.locator("tr.verdict-row .verdict").all_inner_texts() == ["FAKE", "FAKE"]
    with context.expect_page() as opened:
        page.locator("tr.verdict-row a", has_text="report").first.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.locator("#verdict").inner_text() == "FAKE" and report.locator("#faces tbody tr").count() > 0
    assert report.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    screenshot(report, "report")

    video = samples.face_video(tmp_path / "clip.mp4", samples.sample_photos()[1].image, seconds=0.5, fps=8).path
    page.goto(site.url)
    page.set_input_files("#upload input[type=file]", str(video))
    page.click("#upload button")
    page.wait_for_load_state()
    assert page.locator("#run-state").inner_text() == "queued" and "check?" in page.url
    screenshot(page, "upload-progress")
    assert dialogs == []   # nothing on any page ran a script
