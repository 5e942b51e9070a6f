"""Great Expectations checks that every face shard passes before anything downstream reads it.

The schema is compared exactly with pyarrow first (a shard with the wrong columns or types can't be
checked row by row); the rows are then validated by a Great Expectations 1.x suite in an
ephemeral context: non-null keys, confidences in [0, 1], boxes inside the frame, crops that
decode to the declared size, one video per shard and unique (video, frame, face).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from realness_tasks.shards import SHARD_SCHEMA

DETECTORS = ["mtcnn", "azure", "both"]
LABELS = ["FAKE", "REAL"]
KEY_COLUMNS = ["video_id", "source_uri", "frame_index", "timestamp_s", "face_index", "detector", "confidence",
               "box_x", "box_y", "box_w", "box_h", "frame_width", "frame_height", "crop_width", "crop_height",
               "run_id", "created_at"]


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    rows: int
    failures: list[str] = field(default_factory=list)  # one human-readable line per failed check
    details: dict[str, Any] = field(default_factory=dict)  # Great Expectations' result, as JSON

    def reason(self) -> str:
        return "; ".join(self.failures) if self.failures else "ok"


def schema_problems(table: pa.Table) -> list[str]:
    problems = []
    actual = {f.name: f.type for f in table.schema}
    for expected in SHARD_SCHEMA:
        if expected.name not in actual:
            problems.append(f"missing column {expected.name}")
        elif actual[expected.name] != expected.type:
            problems.append(f"column {expected.name} is {actual[expected.name]}, expected {expected.type}")
    problems += [f"unexpected column {name}" for name in actual if name not in SHARD_SCHEMA.names]
    return problems


def _decoded_sizes(crops: list[bytes | None]) -> tuple[list[int], list[int]]:
    widths, heights = [], []
    for data in crops:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        widths.append(-1 if image is None else image.shape[1])
        heights.append(-1 if image is None else image.shape[0])
    return widths, heights


@cache
def load_checks(crop_size: int):
    """The suite and a batch definition over an in-memory DataFrame, built once per process.

    Building them costs about as much as validating a small shard, and a task validates a whole
    batch of shards; the context is ephemeral (no files, nothing persisted between processes).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # never phone home from a task
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch_definition = (context.data_sources.add_pandas("shard")
                        .add_dataframe_asset("face_rows")
                        .add_batch_definition_whole_dataframe("whole_shard"))
    return batch_definition, _suite(crop_size)


def _suite(crop_size: int):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="realness_face_shard")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
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
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="crop_width", value_set=[crop_size]))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="crop_height", value_set=[crop_size]))
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="crop_decoded_width", column_B="crop_width"))
    suite.add_expectation(gxe.ExpectColumnPairValuesToBeEqual(column_A="crop_decoded_height", column_B="crop_height"))
    suite.add_expectation(gxe.ExpectColumnUniqueValueCountToBeBetween(column="video_id", min_value=1, max_value=1))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["video_id", "frame_index", "face_index"]))
    return suite


def _describe(result) -> str:
    config = result.expectation_config
    kwargs = ", ".join(f"{k}={v}" for k, v in config.kwargs.items() if k != "batch_id")
    unexpected = (result.result or {}).get("partial_unexpected_list") or (result.result or {}).get("observed_value")
    return f"{config.type}({kwargs})" + (
        f": e.g. {unexpected[:3] if isinstance(unexpected, list) else unexpected}" if unexpected is not None else "")


def validate_shard(table: pa.Table, crop_size: int) -> ValidationReport:
    """Check one shard; the report says exactly which checks failed and on what values."""
    problems = schema_problems(table)
    if problems:
        return ValidationReport(False, table.num_rows, ["schema: " + p for p in problems])

    frame = table.drop_columns(["crop_jpeg", "landmarks"]).to_pandas()
    frame["box_right"] = frame["box_x"] + frame["box_w"]
    frame["box_bottom"] = frame["box_y"] + frame["box_h"]
    frame["crop_decoded_width"], frame["crop_decoded_height"] = _decoded_sizes(table.column("crop_jpeg").to_pylist())

    batch_definition, suite = load_checks(crop_size)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    failures = [_describe(r) for r in result.results if not r.success]
    return ValidationReport(bool(result.success), table.num_rows, failures, result.to_json_dict())
