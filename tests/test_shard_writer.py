"""Writing a shard as its rows come: the rows of a long video are neither held nor changed."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.face_shards import valid_rows
from realness_tasks.shards import ShardWriter, read_shard, rows_to_table
from realness_tasks.tracks import Linker, Sighting, link


def test_a_shard_written_row_group_by_row_group_holds_the_same_rows(tmp_path):
    rows = valid_rows(64, n=11)
    with ShardWriter(tmp_path / "shard.parquet", rows_per_group=4) as shard:
        for row in rows:
            shard.write(row)
    assert shard.rows == 11
    assert pq.ParquetFile(shard.path).metadata.num_row_groups == 3
    assert read_shard(shard.path.read_bytes()).equals(rows_to_table(rows))


def test_linking_frame_by_frame_gives_the_ids_of_linking_all_at_once():
    rng = np.random.default_rng(0)
    frames = [[Sighting(frame, (int(x), 50, 40, 40), rng.dirichlet(np.ones(24)).astype(np.float32))
               for x in rng.choice([0, 100, 200, 300], size=int(rng.integers(0, 3)), replace=False)]
              for frame in range(40)]
    linker = Linker()
    assert [i for faces in frames for i in linker.add_frame(faces)] == link([s for faces in frames for s in faces])


def test_the_linker_refuses_frames_out_of_time_order():
    linker = Linker()
    linker.add_frame([Sighting(5, (0, 0, 10, 10))])
    with pytest.raises(ValueError, match="time order"):
        linker.add_frame([Sighting(5, (0, 0, 10, 10))])
    with pytest.raises(ValueError, match="one frame"):
        linker.add_frame([Sighting(6, (0, 0, 10, 10)), Sighting(7, (0, 0, 10, 10))])
