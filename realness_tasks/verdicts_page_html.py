"""The verdicts page's HTML: the list of verdicts with its filters and chart, and an upload's progress.

Pure rendering, no request handling (``realness_tasks.verdicts_page`` serves these pages). Every
value that comes from object keys, video names or the database is HTML-escaped; links are relative,
so the pages work behind any mount point. Nothing heavy is imported: matplotlib comes with the
first chart.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from realness_tasks import queries
from realness_tasks.html_pages import STYLE, embedded_image, escaped, line_chart

VERDICTS = ("FAKE", "REAL", "UNCERTAIN", "NO_FACE", "ERROR")
UPLOAD_TOKEN_FIELD = "upload_token"


@dataclass(frozen=True)
class Filters:
    """The page's query: what the form sends, validated."""

    verdict: str = ""
    date_from: str = ""
    date_to: str = ""
    model_version: str = ""
    prefix: str = ""
    sort: str = "p_fake_desc"
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str]) -> Filters:
        verdict = params.get("verdict", "").upper()
        sort = params.get("sort", "p_fake_desc")
        dates = [params.get(name, "").strip() for name in ("date_from", "date_to")]
        for value in dates:
            if value:
                date.fromisoformat(value)   # ValueError on anything but YYYY-MM-DD
        page = params.get("page", "1")
        return cls(verdict if verdict in VERDICTS else "", dates[0], dates[1], params.get("model_version", "").strip(),
                   params.get("prefix", "").strip(), sort if sort in queries.VERDICT_ORDERS else "p_fake_desc",
                   max(1, int(page) if page.isdigit() else 1))

    def query(self, **changes: Any) -> str:
        values = {**self.__dict__, **changes}
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def fake_rate_chart(rates: dict[str, list[tuple[str, float]]]) -> bytes:
    """PNG chart of the daily fake rate, one line per model version (``rates``: version -> (ISO day, rate) points)."""
    def draw(axes: Any) -> None:
        for version, points in rates.items():
            axes.plot([datetime.fromisoformat(d) for d, _ in points], [r for _, r in points], marker="o",
                      label=version)
        axes.set(ylim=(-0.02, 1.02), ylabel="fake rate", title="Daily fake rate per model version")
        axes.legend(loc="upper right", fontsize="small")
        axes.tick_params(axis="x", labelrotation=30, labelsize="small")

    return line_chart(draw, size=(8, 2.8))


def video_name(source_uri: str | None, video_id: str) -> str:
    """What the pages call a video: the file name of ``source_uri``, else ``video_id``."""
    return posixpath.basename(source_uri or "") or video_id


def _page(title: str, body: str, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{escaped(title)}</title>'
            f"<style>{STYLE}{PAGE_STYLE}</style></head><body>{body}</body></html>")


PAGE_STYLE = """
form.filters { display: flex; flex-wrap: wrap; gap: .6em; align-items: end; margin-bottom: 1em; }
form.filters label { display: flex; flex-direction: column; font-size: .85em; }
.pages a, .pages span { margin-right: .8em; } .message { padding: .6em; background: #fdecea; }
"""


def render_list(rows: list[dict], total: int, filters: Filters, page_size: int, versions: list[str],
                chart: bytes | None, form_token: str, message: str = "") -> str:
    """The verdicts page: filters, fake-rate chart, a page of ``rows`` with report links, paging and upload form."""
    def option(value: str, current: str, label: str | None = None) -> str:
        selected = " selected" if value == current else ""
        return f'<option value="{escaped(value)}"{selected}>{escaped(label or value or "any")}</option>'

    form = (
        '<form class="filters" method="get" action="./" id="filters">'
        f'<label>verdict<select name="verdict">{"".join(option(v, filters.verdict) for v in ("", *VERDICTS))}'
        "</select></label>"
        f'<label>from<input type="date" name="date_from" value="{escaped(filters.date_from)}"></label>'
        f'<label>to<input type="date" name="date_to" value="{escaped(filters.date_to)}"></label>'
        f'<label>model version<select name="model_version">'
        f'{"".join(option(v, filters.model_version) for v in ("", *versions))}</select></label>'
        f'<label>source prefix<input name="prefix" value="{escaped(filters.prefix)}" placeholder="landing/…"></label>'
        f'<label>sort<select name="sort">{option("p_fake_desc", filters.sort, "most fake first")}'
        f'{option("p_fake_asc", filters.sort, "least fake first")}{option("newest", filters.sort, "newest first")}'
        '</select></label><button type="submit">Show</button></form>')
    upload = ('<h2>Check one video now</h2><form method="post" action="upload" enctype="multipart/form-data" '
              f'id="upload"><input type="hidden" name="{UPLOAD_TOKEN_FIELD}" value="{escaped(form_token)}">'
              '<input type="file" name="video" accept="video/*" required> '
              '<button type="submit">Upload and check</button></form>')
    lines = []
    for row in rows:
        name = video_name(row["source_uri"], row["video_id"])
        p_fake = "" if row["p_fake"] is None else f"{row['p_fake']:.3f}"
        link = ""
        if row.get("report_uri"):
            href = "report?" + urlencode({"video_id": row["video_id"], "model_version": row["model_version"]})
            link = f'<a href="{escaped(href)}" target="_blank" rel="noopener">report</a>'
        lines.append(
            f'<tr class="verdict-row"><td title="{escaped(row["source_uri"])}">{escaped(name)}</td>'
            f'<td><span class="verdict {escaped(row["verdict"])}">{escaped(row["verdict"])}</span></td>'
            f"<td>{p_fake}</td><td>{row['faces_scored']}</td><td>{escaped(row['model_version'])}</td>"
            f"<td>{escaped(row['run_date'])}</td><td>{escaped(row['reason'])}</td><td>{link}</td></tr>")
    pages = max(1, -(-total // page_size))
    nav = [f'<span id="page-info">page {filters.page} of {pages} ({total} videos)</span>']
    if filters.page > 1:
        nav.append(f'<a href="?{escaped(filters.query(page=filters.page - 1))}" id="previous">previous</a>')
    if filters.page < pages:
        nav.append(f'<a href="?{escaped(filters.query(page=filters.page + 1))}" id="next">next</a>')
    body = [
        "<h1>Realness verdicts</h1>",
        f'<p class="message" id="message">{escaped(message)}</p>' if message else "",
        form,
        embedded_image(chart, "image/png", "daily fake rate per model version") if chart else "",
        '<table id="verdicts"><thead><tr><th>video</th><th>verdict</th><th>p_fake</th><th>faces</th>'
        "<th>model version</th><th>day</th><th>decided by</th><th></th></tr></thead><tbody>",
        *lines, "</tbody></table>",
        f'<p class="pages">{"".join(nav)}</p>', upload,
    ]
    return _page("Realness verdicts", "\n".join(body))


def render_check(name: str, run_state: str | None, ledger_status: str | None, verdict: dict | None) -> str:
    """The progress of one uploaded video; refreshes itself until there is a verdict or a final failure."""
    done = verdict is not None or run_state == "failed" or ledger_status not in (None, "PENDING", "STAGED",
                                                                                  "PUBLISHED")
    lines = [f"<h1>Checking {escaped(name)}</h1>", "<dl>",
             f'<dt>ingest run</dt><dd id="run-state">{escaped(run_state or "queued")}</dd>',
             f'<dt>ingest</dt><dd id="ledger-status">{escaped(ledger_status or "waiting")}</dd>']
    if verdict is not None:
        p_fake = "n/a" if verdict["p_fake"] is None else f"{verdict['p_fake']:.3f}"
        lines.append(f'<dt>verdict</dt><dd><span class="verdict {escaped(verdict["verdict"])}" id="verdict">'
                     f'{escaped(verdict["verdict"])}</span> p_fake {p_fake} ({escaped(verdict["reason"])})</dd>')
        if verdict.get("report_uri"):
            href = "report?" + urlencode({"video_id": verdict["video_id"], "model_version": verdict["model_version"]})
            lines.append(f'<dt>report</dt><dd><a id="report" href="{escaped(href)}">open the report</a></dd>')
    lines.append('</dl><p><a href="./">all verdicts</a></p>')
    if not done:
        lines.append("<p>This page refreshes until the video has a verdict.</p>")
    return _page(f"Checking {name}", "\n".join(lines), refresh_s=None if done else 3)
