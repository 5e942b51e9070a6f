"""Per-video HTML reports: which faces, how confident, where in the video, and why.

A report is one self-contained HTML file (images base64-embedded, no script, nothing fetched) at
``<reports_prefix>videos/<video_id>/<model_version>.html``: the verdict with its probability, the
rule that decided it and the model version; a timeline of the fake probability per face track,
its fake segments shaded (and listed below it); Grad-CAM heatmaps of the most suspicious faces,
computed on the Keras model of the version that scored the video; and a table of every face with
its crop, frame time, detector, label and confidence. Every name, key and reason is HTML-escaped,
so a video called ``<script>.mp4`` is text.

Probabilities in the report are those stored in ``face_scores`` (the TFLite engine's); the heatmaps
come from ``model.keras`` of the same version, whose output the engine matches to 1e-4.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from realness_tasks import queries, registry, verdicts
from realness_tasks.config import RealnessConfig
from realness_tasks.crops import decode_crops
from realness_tasks.db import Database
from realness_tasks.faces import encode_jpeg
from realness_tasks.html_pages import STYLE, embedded_image, escaped, line_chart
from realness_tasks.model import BACKBONE_NAME
from realness_tasks.resources import run_resources
from realness_tasks.shards import current_shards, read_shard
from realness_tasks.storage import ObjectStore

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# The Grad-CAM forward pass must reproduce the model's own output to this much, or the map explains another model.
GRADCAM_TOLERANCE = 1e-4
DETECTOR_NAMES = {"mtcnn": "MTCNN", "azure": "Azure", "both": "MTCNN + Azure"}


@dataclass(frozen=True)
class ReportFace:
    """One scored face as the report shows it: the shard's crop and detection, the model's score."""

    frame_index: int
    face_index: int
    timestamp_s: float
    detector: str
    detection_confidence: float
    crop_jpeg: bytes
    p_fake: float
    label: str
    confidence: float
    identity: str | None = None          # "identity 12 (Name)" when identities are on
    reference_faces: int | None = None   # reference faces of that identity it was judged against
    p_identity: float | None = None      # its score relative to that reference
    track_id: int | None = None          # its face track; None in a shard written before tracks

    @property
    def p_judged(self) -> float:
        return self.p_fake if self.p_identity is None else self.p_identity

    @property
    def person(self) -> int:
        """The group the verdict judged it in (``verdicts.person_key``): its track, else its face_index."""
        return self.face_index if self.track_id is None else self.track_id


def report_key(cfg: RealnessConfig, video_id: str, model_version: str) -> str:
    """Where a video's report for one model version is stored, so each version that scored it keeps its own."""
    return f"{cfg.reports_prefix}videos/{video_id}/{model_version}.html"


class GradCam:
    """Grad-CAM (Selvaraju et al., 2017) on the backbone's last spatial feature map.

    The backbone is the nested model named ``model.BACKBONE_NAME``, whatever network it is. The
    map is split off as a sub-model from the backbone's input to its last 4-D output; the layers
    after it (the backbone's pooling, then the classifier head) are applied one after another, so
    the gradient of the fake probability reaches the map. That assumes the network is a chain
    after the map; every call checks the result against the model's own output and raises if it
    differs, rather than explain a different computation.
    """

    def __init__(self, model: keras.Model):
        import keras

        backbone = model.get_layer(BACKBONE_NAME)
        spatial = [i for i, layer in enumerate(backbone.layers) if len(layer.output.shape) == 4]
        if not spatial:
            raise ValueError(f"backbone {BACKBONE_NAME!r} has no 4-D (spatial) feature map")
        position = model.layers.index(backbone)
        self.model = model
        self.image_size = int(model.inputs[0].shape[1])
        self.before = [layer for layer in model.layers[:position] if not isinstance(layer, keras.layers.InputLayer)]
        self.features = keras.Model(backbone.inputs, backbone.layers[spatial[-1]].output)
        self.after = backbone.layers[spatial[-1] + 1:] + model.layers[position + 1:]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``[n, s, s, 3]`` model input -> ``[n, h, w]`` maps in [0, 1] at the feature map's resolution."""
        import tensorflow as tf

        x = tf.convert_to_tensor(images, tf.float32)
        for layer in self.before:
            x = layer(x, training=False)
        not_a_chain = f"the network after the {BACKBONE_NAME!r} feature map is not a chain of layers"
        with tf.GradientTape() as tape:
            feature_map = self.features(x, training=False)
            tape.watch(feature_map)
            y = feature_map
            try:
                for layer in self.after:
                    y = layer(y, training=False)
            except (ValueError, TypeError) as exc:   # a merge layer, or a layer fed by another branch
                raise ValueError(f"Grad-CAM cannot run: {not_a_chain}") from exc
        expected = np.asarray(self.model(images, training=False))
        difference = float(np.max(np.abs(np.asarray(y) - expected)))
        if not difference <= GRADCAM_TOLERANCE:
            raise ValueError(f"Grad-CAM's forward pass differs from the model's output by {difference:.2e}: "
                             f"{not_a_chain}")
        gradients = tape.gradient(y, feature_map)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1)).numpy()
        peak = cam.max(axis=(1, 2), keepdims=True)
        return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)

    def heatmaps(self, crops: Sequence[bytes]) -> list[np.ndarray]:
        """One float map in [0, 1] per JPEG crop, at the crop's own size."""
        maps = self(np.asarray(decode_crops(list(crops), self.image_size)))
        sizes = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] for jpeg in crops]
        return [cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
                for cam, (height, width) in zip(maps, sizes, strict=True)]


def load_gradcam(cfg: RealnessConfig, store: ObjectStore, model_version: str) -> GradCam:
    """Grad-CAM on ``model.keras`` of the version folder."""
    import keras

    with tempfile.TemporaryDirectory(prefix="realness-report-") as workdir:
        try:
            path = registry.fetch_artefact(cfg, store, model_version, "model.keras", Path(workdir))
        except KeyError:
            raise FileNotFoundError(f"model {model_version} has no model.keras in "
                                    f"{store.uri_for(registry.version_prefix(cfg, model_version))}") from None
        return GradCam(keras.models.load_model(path, compile=False))


def overlay(crop_jpeg: bytes, heatmap: np.ndarray) -> bytes:
    """The heatmap in the JET colour map blended over the crop, as JPEG."""
    crop = cv2.imdecode(np.frombuffer(crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    colours = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    return encode_jpeg(cv2.addWeighted(crop, 0.55, colours, 0.45, 0), 90)


def timeline_png(faces: Sequence[ReportFace], threshold: float, segments: Sequence[verdicts.Segment] = ()) -> bytes:
    """Fake probability over the video's time, one line per face track, with the model's threshold and
    the FAKE segments shaded."""
    return line_chart(lambda axes: _draw_timeline(axes, faces, threshold, segments))


def _draw_timeline(axes: Any, faces: Sequence[ReportFace], threshold: float,
                   segments: Sequence[verdicts.Segment]) -> None:
    noun = "face" if all(f.track_id is None for f in faces) else "track"
    for track in sorted({f.person for f in faces}):
        points = sorted((f.timestamp_s, f.p_judged) for f in faces if f.person == track)
        axes.plot([t for t, _ in points], [p for _, p in points], marker="o", markersize=3, label=f"{noun} {track}")
    for number, segment in enumerate(s for s in segments if s.verdict == verdicts.FAKE):
        axes.axvspan(segment.start_s, max(segment.end_s, segment.start_s + 0.1), color="red", alpha=0.15,
                     label="fake segment" if number == 0 else None)
    axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:.2f}")
    axes.set(ylim=(-0.02, 1.02), xlabel="time in the video (s)", ylabel="fake probability")
    axes.legend(loc="upper right", fontsize="small")


def load_faces(cfg: RealnessConfig, store: ObjectStore, db: Database, video_id: str,
               model_version: str) -> list[ReportFace]:
    """The video's scored faces: scores from ``face_scores``, crops and detections from its newest shard."""
    scores = {(r["frame_index"], r["face_index"]): r
              for r in queries.report_face_scores(db, video_id, model_version)}
    shard = current_shards(store, cfg.faces_prefix).get(video_id)
    if not scores or shard is None:
        return []
    faces = []
    for row in read_shard(store.get_bytes(shard.key)).to_pylist():
        score = scores.get((row["frame_index"], row["face_index"]))
        if score is not None:
            faces.append(ReportFace(row["frame_index"], row["face_index"], row["timestamp_s"], row["detector"],
                                    row["confidence"], row["crop_jpeg"], score["p_fake"], score["label"],
                                    score["confidence"], identity_label(score["identity_id"], score["name"]),
                                    score["reference_faces"], score["p_identity"], row.get("track_id")))
    return sorted(faces, key=lambda f: (f.timestamp_s, f.face_index))


def identity_label(identity_id: int | None, name: str | None) -> str | None:
    """How the report names a face's identity ("identity 12 (Name)"); None for a face with no identity."""
    if identity_id is None:
        return None
    return f"identity {identity_id}" + (f" ({name})" if name else "")


def references_used(faces: Sequence[ReportFace]) -> str:
    """Which references the faces were judged against, for the report's summary."""
    used = sorted({(f.identity, f.reference_faces) for f in faces if f.reference_faces})
    if not used:
        return "none: every face judged against all faces (no identity with enough reference faces)"
    return "; ".join(f"{identity}: {count} reference faces" for identity, count in used)


def most_suspicious(faces: Sequence[ReportFace], count: int) -> list[ReportFace]:
    """The ``count`` faces with the highest judged fake probability, earliest first on ties: those given heatmaps."""
    return sorted(faces, key=lambda f: (-f.p_judged, f.timestamp_s, f.face_index))[:count]


def render(verdict: dict[str, Any], threshold: float, faces: Sequence[ReportFace],
           heatmaps: dict[tuple[int, int], bytes], segments: Sequence[verdicts.Segment] = ()) -> str:
    """The report's HTML from the verdicts row, the model's threshold, the faces, their heatmap overlays
    and the verdict's segments."""
    name = posixpath.basename(verdict["source_uri"] or "") or verdict["video_id"]
    p_fake = "n/a" if verdict["p_fake"] is None else f"{verdict['p_fake']:.3f}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Realness report: {escaped(name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escaped(name)}</h1>",
        f'<p><span class="verdict {escaped(verdict["verdict"])}" id="verdict">{escaped(verdict["verdict"])}</span></p>',
        "<dl>",
        f"<dt>fake probability</dt><dd>{p_fake}</dd>",
        f"<dt>decided by</dt><dd>{escaped(verdict['reason'])}</dd>",
        f"<dt>model version</dt><dd>{escaped(verdict['model_version'])} (threshold {threshold:.3f})</dd>",
        f"<dt>faces</dt><dd>{verdict['faces_scored']} scored, {verdict['fake_faces']} at or above the threshold</dd>",
        f"<dt>source</dt><dd>{escaped(verdict['source_uri'])}</dd>",
        f"<dt>video id</dt><dd>{escaped(verdict['video_id'])}</dd>",
        f"<dt>decided at</dt><dd>{escaped(verdict['decided_at'])} UTC (run {escaped(verdict['run_id'])})</dd>",
        "</dl>",
    ]
    if not faces:
        parts.append("<p>No scored faces for this video.</p></body></html>")
        return "\n".join(parts)
    if any(f.identity for f in faces):
        parts.insert(parts.index("</dl>"), f"<dt>judged against</dt><dd id=\"references\">"
                                           f"{escaped(references_used(faces))}</dd>")
    parts += ["<h2>Fake probability over time</h2>",
              embedded_image(timeline_png(faces, threshold, segments), "image/png",
                             "fake probability per face track over time, fake segments shaded")]
    if segments:
        parts += ["<h2>Segments</h2>", '<table id="segments"><thead><tr><th>track</th><th>from (s)</th>'
                  "<th>to (s)</th><th>faces</th><th>mean p_fake</th><th>verdict</th></tr></thead><tbody>"]
        parts += [f"<tr><td>{s.track_id}</td><td>{s.start_s:.2f}</td><td>{s.end_s:.2f}</td><td>{s.faces}</td>"
                  f"<td>{s.p_fake:.3f}</td><td class=\"{escaped(s.verdict)}\">{escaped(s.verdict)}</td></tr>"
                  for s in segments]
        parts.append("</tbody></table>")
    if heatmaps:
        parts.append("<h2>Where the model looked (Grad-CAM, most suspicious faces)</h2>")
        for face in (f for f in faces if (f.frame_index, f.face_index) in heatmaps):
            caption = f"{face.timestamp_s:.2f} s, face {face.face_index}: p_fake {face.p_fake:.3f}"
            parts.append(f"<figure>{embedded_image(face.crop_jpeg, 'image/jpeg', 'face crop', 'crop')}"
                         f"{embedded_image(heatmaps[(face.frame_index, face.face_index)], 'image/jpeg', 'Grad-CAM', 'crop')}"
                         f"<figcaption>{caption}</figcaption></figure>")
    parts += ["<h2>Faces</h2>", '<table id="faces"><thead><tr><th>crop</th><th>time (s)</th><th>frame</th>'
              "<th>face</th><th>detector</th><th>label</th><th>confidence</th><th>p_fake</th>"
              "<th>identity</th><th>p_fake vs reference</th><th>detection confidence</th></tr></thead><tbody>"]
    for face in faces:
        detector = DETECTOR_NAMES.get(face.detector, face.detector)
        parts.append(f"<tr><td>{embedded_image(face.crop_jpeg, 'image/jpeg', 'face crop', 'crop')}</td>"
                     f"<td>{face.timestamp_s:.2f}</td><td>{face.frame_index}</td><td>{face.face_index}</td>"
                     f"<td>{escaped(detector)}</td><td class=\"{escaped(face.label)}\">{escaped(face.label)}</td>"
                     f"<td>{face.confidence:.3f}</td><td>{face.p_fake:.3f}</td>"
                     f"<td>{escaped(face.identity or '')}</td>"
                     f"<td>{'' if face.p_identity is None else f'{face.p_identity:.3f}'}</td>"
                     f"<td>{face.detection_confidence:.2f}</td></tr>")
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts)


def write_report(cfg: RealnessConfig, store: ObjectStore, db: Database, video_id: str, model_version: str,
                 gradcam: GradCam) -> str:
    """Build the report of one verdict, store it, record its URI with the verdict; returns the URI."""
    verdict = queries.verdict_row(db, video_id, model_version)
    faces = load_faces(cfg, store, db, video_id, model_version)
    suspicious = most_suspicious(faces, cfg.report.gradcam_faces)
    heatmaps = {}
    if suspicious:
        maps = gradcam.heatmaps([f.crop_jpeg for f in suspicious])
        heatmaps = {(f.frame_index, f.face_index): overlay(f.crop_jpeg, m) for f, m in zip(suspicious, maps, strict=True)}
    key = report_key(cfg, video_id, model_version)
    page = render(verdict, queries.version_threshold(db, model_version), faces, heatmaps,
                  queries.segments_of(db, video_id, model_version))
    store.put_bytes(key, page.encode("utf-8"))
    uri = store.uri_for(key)
    verdicts.set_report_uri(db, video_id, model_version, uri)
    return uri


def write_run_reports(cfg: RealnessConfig, run_id: str, progress: Progress | None = None) -> dict[str, str]:
    """Reports for the verdicts a scoring run decided whose verdict is in ``cfg.report.verdicts``.

    Returns {video_id: report URI}. Reading the run's verdicts from the database makes a retry
    rewrite the same reports.
    """
    wanted = sorted(cfg.report.verdict_set)
    if not wanted:
        return {}
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        rows = queries.run_verdicts(db, run_id, wanted)
        written: dict[str, str] = {}
        gradcams: dict[str, GradCam] = {}
        for number, row in enumerate(rows, 1):
            version = row["model_version"]
            if version not in gradcams:
                gradcams[version] = load_gradcam(cfg, store, version)
            written[row["video_id"]] = write_report(cfg, store, db, row["video_id"], version, gradcams[version])
            if progress:
                progress(f"[{number}/{len(rows)}] {row['verdict']} {row['video_id'][:12]}: {written[row['video_id']]}")
        log.info("run %s: %d reports (verdicts %s)", run_id, len(written), ", ".join(wanted))
        return written


def write_video_report(cfg: RealnessConfig, video: str, model_version: str | None = None) -> str:
    """The report of one scored video, by video id or source URI; by default for its latest verdict."""
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        rows = (queries.latest_verdicts_of(db, video) if model_version is None
                else queries.find_verdicts(db, video, model_version))
        if not rows:
            raise KeyError(f"no verdict for {video}" + (f" by model {model_version}" if model_version else "")
                           + ": give a video id or source URI that was scored")
        video_id, version = rows[0]["video_id"], rows[0]["model_version"]
        return write_report(cfg, store, db, video_id, version, load_gradcam(cfg, store, version))
