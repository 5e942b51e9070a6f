"""Great Expectations checks that every face shard passes before anything downstream reads it.

Shards are validated many at a time: Great Expectations' cost is per run (its metric graph for
the suite), not per row, so one run over the rows of up to a few hundred shards costs about what
one shard did. Each shard is first read and its schema compared exactly with pyarrow (a shard
that cannot be read or has the wrong columns or types can't be checked row by row); such a shard
gets its report alone and stays out of the run. The rest are validated by one Great Expectations
1.x suite run in an ephemeral context over a DataFrame of all their rows, with a column naming
each row's shard: non-null keys, confidences in [0, 1], boxes inside the frame, crops that decode
to the declared size and were cut with the configured margin, each row's video the one its shard
was staged for, and unique (shard, video, frame, face). Every expectation is row-level, so each
failure is attributed to the shards of its unexpected rows (``unexpected_index_column_names``) and
a shard's report equals the one it gets validated alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from realness_tasks.settings import CropSettings
from realness_tasks.shards import ROWS_PER_GROUP, SHARD_SCHEMA, read_shard

DETECTORS = ["mtcnn", "azure", "both"]
LABELS = ["FAKE", "REAL"]
KEY_COLUMNS = ["video_id", "source_uri", "frame_index", "timestamp_s", "face_index", "detector", "confidence",
               "box_x", "box_y", "box_w", "box_h", "frame_width", "frame_height", "crop_width", "crop_height",
               "crop_margin", "run_id", "created_at"]
SHARD_COLUMN = "shard"                     # the row's shard: its position in the run, as text
STAGED_VIDEO_COLUMN = "staged_video_id"    # the video the row's shard was staged for
# Every unexpected row with its shard, so that each failure can be attributed to the shards it concerns.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": [SHARD_COLUMN],
                 "return_unexpected_index_query": False}
EXAMPLES_PER_FAILURE = 3


@dataclass(frozen=True)
class StagedShard:
    """A shard to validate: the video it was staged for and how to fetch its Parquet bytes.

    Shards are fetched one at a time and only their checked columns kept, so a run never holds
    all its crops at once.
    """

    video_id: str
    fetch: Callable[[], bytes]


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one shard: whether it passed, and why not."""

    success: bool
    rows: int
    failures: list[str] = field(default_factory=list)  # one human-readable line per failed check
    details: dict[str, Any] = field(default_factory=dict)  # the failed expectations and this shard's rows, as JSON

    def reason(self) -> str:
        """The failed checks in one line, or ``ok``."""
        return "; ".join(self.failures) if self.failures else "ok"


def schema_problems(table: pa.Table) -> list[str]:
    """One line per column that is missing, of another type, or not in the shard schema."""
    problems = []
    actual = {f.name: f.type for f in table.schema}
    for expected in SHARD_SCHEMA:
        if expected.name not in actual:
            problems.append(f"missing column {expected.name}")
        elif actual[expected.name] != expected.type:
            problems.append(f"column {expected.name} is {actual[expected.name]}, expected {expected.type}")
    problems += [f"unexpected column {name}" for name in actual if name not in SHARD_SCHEMA.names]
    return problems


def _decoded_sizes(crops: pa.ChunkedArray) -> tuple[list[int], list[int]]:
    """Each crop's decoded width and height (-1 when it does not decode), ``ROWS_PER_GROUP`` crops in
    Python at a time rather than a second copy of all of them."""
    widths, heights = [], []
    for start in range(0, len(crops), ROWS_PER_GROUP):
        for data in crops.slice(start, ROWS_PER_GROUP).to_pylist():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            widths.append(-1 if image is None else image.shape[1])
            heights.append(-1 if image is None else image.shape[0])
    return widths, heights


@cache
def load_checks(crop: CropSettings):
    """The suite and a batch definition over an in-memory DataFrame, built once per process.

    Building them costs about as much as a small validation run; the context is ephemeral (no
    files, nothing persisted between processes).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # never phone home from a task
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch_definition = (context.data_sources.add_pandas("shards")
                        .add_dataframe_asset("face_rows")
                        .add_batch_definition_whole_dataframe("whole_run"))
    return batch_definition, _suite(crop)


def _suite(crop: CropSettings):
    """Row-level expectations only: a table-level one could not say which shard broke it."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="realness_face_shard")
    for column in KEY_COLUMNS:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="confidence", min_value=0.0, max_value=1.0))
    for column in ("box_x", "box_y", "frame_index", "face_index", "timestamp_s"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0))
    for column in ("box_w", "box_h", "frame_width", "frame_height"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=1))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="frame_width", column_B="box_right", or_equal=True))
    suite.add_expectation(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="frame_height", column_B="box_bottom", or_equal=True))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="detector", value_set=DETECTORS))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=LABELS))  # nulls allowed
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="crop_width", value_set=[crop.size]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="crop_height", value_set=[crop.size]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="crop_margin", value_set=[crop.margin]))
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="crop_decoded_width", column_B="crop_width"))
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="crop_decoded_height", column_B="crop_height"))
    # One video per shard: the one it was staged for (the content hash that names its key).
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="video_id", column_B=STAGED_VIDEO_COLUMN))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(
        column_list=[SHARD_COLUMN, "video_id", "frame_index", "face_index"]))
    return suite


def _read(shard: StagedShard) -> pa.Table | ValidationReport:
    """The shard's table, or the report of a shard that cannot be checked row by row.

    Fetching is outside the ``try``: an unreachable store must fail the task, not quarantine the shard.
    """
    data = shard.fetch()
    try:
        table = read_shard(data)
    except (pa.ArrowException, OSError) as exc:  # pyarrow reports a corrupt file as either
        return ValidationReport(False, 0, [f"unreadable: {exc}"])
    problems = ["schema: " + p for p in schema_problems(table)] or (["rows: the shard has no rows"]
                                                                    if table.num_rows == 0 else [])
    return ValidationReport(False, table.num_rows, problems) if problems else table


def _checked_rows(table: pa.Table, shard_id: str, staged_video_id: str):
    """The columns the suite checks, plus the ones it derives; the crops are dropped once their sizes are known."""
    frame = table.drop_columns(["crop_jpeg", "landmarks"]).to_pandas()
    frame[SHARD_COLUMN] = shard_id
    frame[STAGED_VIDEO_COLUMN] = staged_video_id
    frame["box_right"] = frame["box_x"] + frame["box_w"]
    frame["box_bottom"] = frame["box_y"] + frame["box_h"]
    frame["crop_decoded_width"], frame["crop_decoded_height"] = _decoded_sizes(table.column("crop_jpeg"))
    return frame


def _plain(value: Any) -> Any:
    """A value as JSON holds it: numpy scalars as Python ones, and None for the NaN pandas makes of a null number."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _unexpected_rows_by_shard(result) -> dict[str, list[dict[str, Any]]]:
    """Shard id -> the checked columns of its rows that failed ``result``, in row order."""
    if "unexpected_index_list" not in (result.result or {}):
        # Only an expectation that could not be evaluated lacks it: a fault, not a verdict on the data.
        raise RuntimeError(f"Great Expectations could not evaluate {result.expectation_config.type}: "
                           f"{result.exception_info}")
    rows: dict[str, list[dict[str, Any]]] = {}
    for entry in result.result["unexpected_index_list"]:
        values = {column: _plain(value) for column, value in entry.items() if column != SHARD_COLUMN}
        rows.setdefault(str(entry[SHARD_COLUMN]), []).append(values)
    return rows


def _describe(config, unexpected: list[dict[str, Any]]) -> str:
    """``expect_...(column=confidence, ...): 2 rows, e.g. [1.2, 1.7]``: the check and this shard's values."""
    kwargs = ", ".join(f"{k}={v}" for k, v in _kwargs(config).items())
    examples = [next(iter(row.values())) if len(row) == 1 else row for row in unexpected[:EXAMPLES_PER_FAILURE]]
    return f"{config.type}({kwargs}): {len(unexpected)} row{'s' if len(unexpected) != 1 else ''}, e.g. {examples}"


def _reports_from_run(result, rows_per_shard: dict[str, int]) -> dict[str, ValidationReport]:
    """One report per shard of the run: the expectations its rows failed, with those rows' values."""
    failed: dict[str, list[tuple[Any, list[dict[str, Any]]]]] = {shard_id: [] for shard_id in rows_per_shard}
    for expectation in result.results:
        if not expectation.success:
            for shard_id, unexpected in _unexpected_rows_by_shard(expectation).items():
                failed[shard_id].append((expectation.expectation_config, unexpected))
    return {shard_id: ValidationReport(
        not failures, rows_per_shard[shard_id], [_describe(config, rows) for config, rows in failures],
        {"evaluated_expectations": len(result.results),
         "failed_expectations": [{"type": config.type, "kwargs": _kwargs(config), "unexpected_rows": rows}
                                 for config, rows in failures]})
        for shard_id, failures in failed.items()}


def _kwargs(config) -> dict[str, Any]:
    return {k: v for k, v in config.kwargs.items() if k != "batch_id"}


def validate_shards(shards: Sequence[StagedShard], crop: CropSettings) -> list[ValidationReport]:
    """One report per shard, in order, from a single Great Expectations run over all their rows.

    Each report says exactly which checks failed on which of that shard's values. A shard that cannot
    be read, has the wrong schema or no rows is reported on its own and never holds the others back.
    """
    import pandas as pd

    reports: dict[str, ValidationReport] = {}
    frames = []
    for position, shard in enumerate(shards):
        table = _read(shard)
        if isinstance(table, ValidationReport):
            reports[str(position)] = table
        else:
            frames.append(_checked_rows(table, str(position), shard.video_id))
    if frames:
        rows = pd.concat(frames, ignore_index=True)
        batch_definition, suite = load_checks(crop)
        result = batch_definition.get_batch(batch_parameters={"dataframe": rows}).validate(
            suite, result_format=RESULT_FORMAT)
        reports |= _reports_from_run(result, rows[SHARD_COLUMN].value_counts().to_dict())
    return [reports[str(position)] for position in range(len(shards))]
