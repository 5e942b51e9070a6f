"""What every HTML page of Realness shares: escaping, embedded images, charts and the stylesheet.

Kept apart from ``reports`` (OpenCV, NumPy, Keras) so that the verdicts page, which the Airflow
api-server serves, imports nothing heavy until it draws a chart (matplotlib, imported then).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from typing import Any


def line_chart(draw: Callable[[Any], None], size: tuple[float, float] = (7.5, 2.8)) -> bytes:
    """A PNG chart drawn by ``draw(axes)`` with matplotlib's Agg canvas (no display, no global pyplot state)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    figure.tight_layout()
    sink = io.BytesIO()
    figure.savefig(sink, format="png")
    return sink.getvalue()


def embedded_image(data: bytes, mime: str, alt: str, css_class: str = "") -> str:
    """An ``<img>`` carrying its image as a data URI, so the page needs nothing else."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="data:{mime};base64,{encoded}">'


def escaped(value: Any) -> str:
    """Any value as HTML text: names and keys come from whoever named the files."""
    return html.escape("" if value is None else str(value))


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
.verdict { display: inline-block; padding: .2em .7em; border-radius: .3em; color: #fff; font-weight: bold; }
.FAKE { background: #c0392b; } .REAL { background: #27ae60; } .UNCERTAIN { background: #e67e22; }
.NO_FACE, .ERROR { background: #7f8c8d; }
dl { display: grid; grid-template-columns: max-content auto; gap: .3em 1.2em; }
dt { font-weight: bold; } dd { margin: 0; }
table { border-collapse: collapse; } th, td { border-bottom: 1px solid #ddd; padding: .3em .7em; text-align: left; }
img.crop { width: 96px; height: 96px; } figure { display: inline-block; margin: 0 1em 1em 0; }
td.FAKE, td.REAL { background: none; color: inherit; font-weight: bold; }
"""
