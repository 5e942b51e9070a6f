"""The verdicts page in the Airflow UI: ``realness_tasks.verdicts_page`` mounted in the api-server.

The app is served at ``/realness/`` by the api-server (plugin ``fastapi_apps``) and linked from the
UI's navigation (``external_views``, under Browse). Every route depends on Airflow's own
``get_user`` (the UI's session cookie or a Bearer token), so an unauthenticated request is
refused with 401; uploads trigger ``realness_ingest`` through Airflow's REST API as the caller, at
``REALNESS_REPORT_AIRFLOW_API_URL``, else Airflow's ``[api] base_url`` (the public address, which
inside the api-server's container may not reach it).

Every Airflow process (scheduler, dag-processor, each task) imports its plugins, but only the
api-server serves the page, so this module imports nothing but the plugin base class: the app,
with its imports, is built on the first request it gets (:class:`VerdictsApp`).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/realness"


def verdicts_app():
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import get_user
    from airflow.configuration import conf
    from realness_airflow import load_config
    from realness_tasks.config import RealnessConfig
    from realness_tasks.verdicts_page import AirflowRuns, create_app

    api_url = RealnessConfig.from_env().report.airflow_api_url or conf.get("api", "base_url", fallback=None)
    runs = AirflowRuns(api_url, cookie_name=COOKIE_NAME_JWT_TOKEN)
    return create_app(load_config, get_user, runs, session_cookie=COOKIE_NAME_JWT_TOKEN)


class VerdictsApp:
    """An ASGI app that builds the verdicts page (:func:`verdicts_app`) when its first request comes in."""

    def __init__(self):
        self.app = None

    async def __call__(self, scope, receive, send) -> None:
        if self.app is None:
            self.app = verdicts_app()
        await self.app(scope, receive, send)


class RealnessVerdictsPlugin(AirflowPlugin):
    name = "realness_verdicts"
    fastapi_apps = [{"app": VerdictsApp(), "url_prefix": URL_PREFIX, "name": "Realness verdicts"}]
    external_views = [{"name": "Realness verdicts", "href": URL_PREFIX.lstrip("/") + "/", "destination": "nav",
                       "category": "browse", "url_route": "realness-verdicts"}]
