"""A landing prefix full of what real archives contain: faces, no faces, and every kind of bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realness_tasks import samples
from realness_tasks.storage import ObjectStore


@dataclass
class Landing:
    expected: dict[str, str] = field(default_factory=dict)  # key -> expected final ledger status
    face_video: samples.SampleVideo | None = None
    labels: dict[str, str] = field(default_factory=dict)  # key -> expected label
    same_content: tuple[str, ...] = ()  # keys with identical bytes: exactly one is processed, in any order

    @property
    def videos(self) -> list[str]:
        """The keys that are videos (what discovery hands to the extract tasks): every object but the label sidecars."""
        return [k for k, status in self.expected.items() if status not in ("SIDECAR", "BAD_SIDECAR")]

    def assert_statuses(self, got: dict[str, str]) -> None:
        """``got`` (key -> status) matches; of the identical copies, one was ingested and the rest are duplicates."""
        copies = sorted(got.pop(k) for k in self.same_content)
        expected = {k: v for k, v in self.expected.items() if k not in self.same_content}
        assert got == expected
        if self.same_content:
            assert copies == sorted(["PUBLISHED"] + ["DUPLICATE"] * (len(self.same_content) - 1)), copies


def populate(store: ObjectStore, workdir: Path, prefix: str = "landing/", *, with_bad_input: bool = True) -> Landing:
    photos = {p.name: p for p in samples.sample_photos()}
    workdir.mkdir(parents=True, exist_ok=True)
    landing = Landing()

    def put(key: str, path: Path | None = None, data: bytes | None = None, status: str = "PUBLISHED") -> None:
        store.put_bytes(prefix + key, data if data is not None else path.read_bytes())
        landing.expected[prefix + key] = status

    # A face for the first second only, then background: faces must be found exactly there.
    landing.face_video = samples.face_video(workdir / "partial.mp4", photos["obama"].image, seconds=2.0, fps=8,
                                            face_between=(0.0, 1.0), seed=1)
    put("clips/partial face.mp4", landing.face_video.path)
    put("clips/fake/swap.avi", samples.face_video(workdir / "swap.avi", samples.face_swap(photos["obama2"], photos["biden"]),
                                                  seconds=1.0, fps=8, seed=2).path)
    landing.labels[prefix + "clips/fake/swap.avi"] = "FAKE"
    put("dfdc/astronaut.mp4", samples.face_video(workdir / "astro.mp4", photos["astronaut"].image, seconds=1.0, fps=8,
                                                 seed=3).path)
    store.put_bytes(prefix + "dfdc/metadata.json", json.dumps({"astronaut.mp4": {"label": "REAL", "original": None}}).encode())
    landing.expected[prefix + "dfdc/metadata.json"] = "SIDECAR"
    landing.labels[prefix + "dfdc/astronaut.mp4"] = "REAL"
    put("empty room.mkv", samples.face_video(workdir / "room.mkv", None, seconds=1.0, fps=8, seed=4).path, status="NO_FACE")
    if not with_bad_input:
        return landing
    put("ünïcode ☃/copy of astronaut.mp4", workdir / "astro.mp4", status="DUPLICATE")
    landing.same_content = (prefix + "dfdc/astronaut.mp4", prefix + "ünïcode ☃/copy of astronaut.mp4")
    put("broken/zero.mp4", data=b"", status="EMPTY")
    put("broken/noise.mp4", data=np.random.default_rng(0).bytes(50_000), status="NOT_VIDEO")
    put("broken/notes.avi", data=b"these are meeting notes, not a video\n" * 100, status="NOT_VIDEO")
    whole = (workdir / "partial.mp4").read_bytes()
    put("broken/truncated.mp4", data=whole[: len(whole) // 3], status="UNREADABLE")
    return landing
