"""Face embeddings and the enrolment database (usable without the CLI or a pipeline).

* `FaceEmbedder`: align faces to the ArcFace template (`streamcnn.ops.align.arcface_align`), embed
  them with MobileFaceNet (``mobilefacenet_128d``: RGB, ``(x − 127.5)/128``, 112×112, dynamic batch;
  output not normalised) in **one** model call per image, and L2-normalise.
* `FaceDB`: names, unit templates, per-person sample counts and sums, and the embedding model's
  sha256 and input recipe, stored as ``.npz``. A person's template is the re-normalised mean of
  their unit embeddings; the per-person sum is kept so people can be added, replaced or removed
  without re-embedding anyone else.
* `enroll_folder`: ``PEOPLE_DIR/<name>/*.jpg`` (sub-folders of a person's folder included; hidden
  folders and files skipped and reported) → embeddings of the largest face per photo.

Similarity is cosine on unit vectors; for unit vectors ``‖a − b‖² = 2 − 2·cos``, so a cosine
threshold t is the L2 threshold ``sqrt(2 − 2t)`` (`cosine_to_l2`, `l2_to_cosine`).

Default threshold: cosine 0.40 (`DEFAULT_COSINE_THRESHOLD`). Measured on the registry's sample
photos (one enrolment photo each): same person 0.57-0.79 (obama2/obama3 against obama.jpg:
0.765/0.770 with yunet, 0.752/0.780 with scrfd; biden2 0.59-0.62), different people ≤ 0.17; 0.40
leaves 0.17 below the weakest genuine pair and 0.23 above the strongest impostor pair, leaning to
"unknown" (a door camera should rather miss a known person than admit a stranger).
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import StreamcnnError
from .ops.align import ARCFACE_SIZE, arcface_align
from .ops.faces import run_fixed_batch

log = logging.getLogger("streamcnn.faces")

DEFAULT_COSINE_THRESHOLD = 0.40
DEFAULT_EMBEDDING_MODEL = "mobilefacenet_128d"
UNKNOWN = "unknown"
_EPS = 1e-6  # a vector shorter than this is blank (never a match)
#: The input recipe stored with every database; a database made with another recipe is refused.
RECIPE = "arcface-5pt similarity 112x112, RGB, (x-127.5)/128, L2-normalised"
DB_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _file_mode(path: Path) -> int:
    """Permission bits for a database written to ``path``: those of the existing file, else
    ``0o666 & ~umask`` (what ``open()`` would give a new file)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def people_count(n: int) -> str:
    """``1 person``, ``2 people``, ``0 people``."""
    return f"{n} person" if n == 1 else f"{n} people"


class FaceDBError(StreamcnnError):
    """A database that cannot be used (missing, malformed, other model); a user error (exit code 2)."""

    exit_code = 2


def cosine_to_l2(t: float) -> float:
    """L2 distance equivalent to cosine ``t`` for unit vectors: ``sqrt(2 − 2t)``."""
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * t)))


def l2_to_cosine(d: float) -> float:
    """Cosine equivalent to L2 distance ``d`` for unit vectors: ``1 − d²/2``."""
    return float(1.0 - d * d / 2.0)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of (N, D) scaled to unit length, float32; all-zero (or non-finite) rows stay zero
    (no division by zero, no NaN, no warning)."""
    x = np.asarray(x, np.float32)
    x = np.where(np.isfinite(x), x, 0).astype(np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    out = np.zeros_like(x)
    np.divide(x, n, out=out, where=n > eps)
    return out


class FaceEmbedder:
    """Align + embed faces with one model call per batch.

    Args:
        model: a `streamcnn.runtime.ModelSession` made through the core (``ModelStage.load_model``,
            or `streamcnn.registry.resolve_model` + `streamcnn.runtime.get_session`), or — for
            scripts — a registry name (``mobilefacenet_128d``) or path, resolved the same way.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (only when ``model`` is a name or path).
        config_dir: folder that a relative model path resolves against (idem).
        stage: name for log lines (idem).

    Attributes:
        path: the model file. sha256: its hex digest. dim: embedding size (e.g. 128).
    """

    def __init__(self, model=DEFAULT_EMBEDDING_MODEL, device: str = "auto",
                 config_dir: Path | None = None, stage: str = "face_recognize") -> None:
        from .registry import sha256_of

        if isinstance(model, (str, Path)):
            from .registry import resolve_model
            from .runtime import get_session

            path, _ = resolve_model(model, config_dir)
            model = get_session(path, device, stage=stage)
        if model.path is None:
            raise ValueError(f"the embedding model {model.name} must be a file (its sha256 is stored in the database)")
        self.session = model
        self.path = Path(model.path)
        self.sha256 = sha256_of(self.path)
        spec = self.session.inputs[0]
        self.input_name = spec.name
        self.fixed_batch = spec.shape[0] if isinstance(spec.shape[0], int) else None
        out = self.session.outputs[0].shape
        self.dim = int(out[-1]) if isinstance(out[-1], int) else 0

    def embed_aligned(self, faces: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) BGR aligned faces → unit float32 (N, D) (one model call unless the
        model has a fixed batch size)."""
        if len(faces) == 0:
            return np.zeros((0, self.dim), np.float32)
        blob = cv2.dnn.blobFromImages(list(faces), 1 / 128, None, (127.5, 127.5, 127.5), swapRB=True)
        emb = run_fixed_batch(self.session, self.input_name, blob, None, self.fixed_batch)[0]
        return l2_normalise(emb.reshape(len(faces), -1))

    def embed(self, image: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Faces of ``image`` (uint8 H×W×3 BGR) given their (N, 5, 2) landmarks → unit (N, D)."""
        faces, _ = arcface_align(image, kps, ARCFACE_SIZE)
        return self.embed_aligned(faces)


@dataclass
class FaceDB:
    """The enrolment database.

    Attributes:
        names: person names (P,).
        templates: float32 (P, D) unit vectors (re-normalised mean of each person's embeddings).
        counts: int64 (P,) number of photos behind each template.
        sums: float32 (P, D) sum of each person's unit embeddings (lets people be updated alone).
        model_sha256: sha256 of the embedding model file that made the templates.
        recipe: the input recipe (alignment, colour, normalisation); `RECIPE` for `FaceEmbedder`.
        model_name: file name of the embedding model (information only).
    """

    names: list[str] = field(default_factory=list)
    templates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    model_sha256: str = ""
    recipe: str = RECIPE
    model_name: str = ""

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.templates.shape[1]) if self.templates.ndim == 2 else 0

    # -- editing ------------------------------------------------------------------------
    def set_person(self, name: str, embeddings: np.ndarray) -> None:
        """Add ``name`` or replace their samples with ``embeddings`` (K, D) (normalised here)."""
        if not len(embeddings):
            raise ValueError(f"no embeddings for {name!r}")
        emb = l2_normalise(np.asarray(embeddings, np.float32).reshape(len(embeddings), -1))
        if len(self) and emb.shape[1] != self.dim:
            raise FaceDBError(f"embedding size {emb.shape[1]} does not match the database's {self.dim}")
        total = emb.sum(axis=0)
        template = l2_normalise(total[None])[0]
        if not len(self):
            self.templates = np.zeros((0, emb.shape[1]), np.float32)
            self.sums = np.zeros((0, emb.shape[1]), np.float32)
        if name in self.names:
            i = self.names.index(name)
            self.templates[i], self.sums[i], self.counts[i] = template, total, len(emb)
        else:
            self.names.append(name)
            self.templates = np.vstack([self.templates, template[None]])
            self.sums = np.vstack([self.sums, total[None]])
            self.counts = np.append(self.counts, len(emb)).astype(np.int64)

    def add_samples(self, name: str, embeddings: np.ndarray) -> None:
        """Add photos to a person (creating them if new); the template becomes the re-normalised
        mean of all their unit embeddings."""
        if name not in self.names:
            self.set_person(name, embeddings)
            return
        emb = l2_normalise(np.asarray(embeddings, np.float32).reshape(len(embeddings), -1))
        i = self.names.index(name)
        self.sums[i] += emb.sum(axis=0)
        self.counts[i] += len(emb)
        self.templates[i] = l2_normalise(self.sums[i][None])[0]

    def remove(self, name: str) -> None:
        """Remove a person. Raises KeyError when absent."""
        if name not in self.names:
            raise KeyError(name)
        i = self.names.index(name)
        del self.names[i]
        self.templates = np.delete(self.templates, i, axis=0)
        self.sums = np.delete(self.sums, i, axis=0)
        self.counts = np.delete(self.counts, i)

    # -- matching --------------------------------------------------------------------------
    def match(self, embeddings: np.ndarray, threshold: float = DEFAULT_COSINE_THRESHOLD
              ) -> tuple[np.ndarray, np.ndarray]:
        """Best match per face.

        Args:
            embeddings: (N, D) unit vectors (zero rows are allowed and never match, whatever the
                threshold; they get similarity 0).
            threshold: cosine similarity a match must reach (``≥``).

        Returns:
            identity: object (N,) names, `UNKNOWN` below the threshold (or empty database).
            similarity: float32 (N,) cosine of the best template (0 for an empty database).
        """
        emb = np.asarray(embeddings, np.float32)
        n = len(emb)
        identity = np.full(n, UNKNOWN, dtype=object)
        if not n or not len(self):
            return identity, np.zeros(n, np.float32)
        emb = emb.reshape(n, -1)
        if emb.shape[1] != self.dim:
            raise FaceDBError(f"embedding size {emb.shape[1]} does not match the database's {self.dim}")
        emb = np.where(np.isfinite(emb), emb, 0).astype(np.float32)
        sim = emb @ self.templates.T
        sim[:, np.linalg.norm(self.templates, axis=1) <= _EPS] = -np.inf  # a blank template never wins
        best = sim.argmax(axis=1)
        score = sim[np.arange(n), best]
        # a blank embedding (no face: degenerate landmarks) never matches, whatever the threshold
        ok = (score >= threshold) & np.isfinite(score) & (np.linalg.norm(emb, axis=1) > _EPS)
        score = np.where(np.isfinite(score), score, 0).astype(np.float32)
        identity[ok] = np.asarray(self.names, dtype=object)[best[ok]]
        return identity, score

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``.npz`` atomically (temporary file + rename, so a running pipeline never reads
        a half-written database). The file gets the mode of the file it replaces, or for a new
        file the usual ``0666 & ~umask`` (not the 0600 of the temporary file).

        Raises:
            FaceDBError: the folder cannot be created or written (permissions, read-only, full disk).
        """
        path = Path(path)
        for parent in path.parents:  # mkdir would say "File exists" for a file in the way
            if parent.exists():
                if not parent.is_dir():
                    raise FaceDBError(f"cannot write face database {path}: {parent} is not a folder")
                break
        try:
            self._write(path)
        except OSError as e:
            raise FaceDBError(f"cannot write face database {path}: {e.strerror or e}") from None

    def _write(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            version=np.int64(DB_VERSION),
            names=np.asarray(self.names, dtype=str) if self.names else np.zeros(0, "<U1"),
            templates=np.asarray(self.templates, np.float32),
            counts=np.asarray(self.counts, np.int64),
            sums=np.asarray(self.sums, np.float32),
            model_sha256=np.asarray(self.model_sha256),
            recipe=np.asarray(self.recipe),
            model_name=np.asarray(self.model_name),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
            os.chmod(tmp, _file_mode(path))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path, model_sha256: str | None = None, recipe: str | None = RECIPE) -> FaceDB:
        """Read a database; un-normalised templates are normalised (with a log line).

        Args:
            path: the ``.npz`` file.
            model_sha256: when given, refuse a database made with another embedding model.
            recipe: when given, refuse a database made with another input recipe.

        Raises:
            FaceDBError: missing/unreadable file, missing fields, inconsistent shapes, other model.
        """
        path = Path(path)
        not_db = (f"{path} is not a streamcnn face database (not a readable .npz file made by "
                  f"`streamcnn faces enroll`); create one with `streamcnn faces enroll PEOPLE_DIR --out {path.name}`")
        try:
            with open(path, "rb") as fh:
                magic = fh.read(4)
            if magic != b"PK\x03\x04":  # an .npz is a zip archive; anything else is not ours
                raise FaceDBError(not_db)
            with np.load(path, allow_pickle=False) as z:  # never unpickles: object arrays are refused
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise FaceDBError(f"face database {path} does not exist (create it with `streamcnn faces enroll`)") \
                from None
        except IsADirectoryError:
            raise FaceDBError(f"face database {path} is a folder, not a .npz file") from None
        except PermissionError as e:
            raise FaceDBError(f"cannot read face database {path}: {e.strerror}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            # numpy's own text may talk about pickled data and allow_pickle: never suggest that
            raise FaceDBError(not_db) from None
        missing = [k for k in ("names", "templates", "model_sha256") if k not in data]
        if missing:
            raise FaceDBError(f"face database {path} lacks {', '.join(missing)}; re-create it with "
                              f"`streamcnn faces enroll PEOPLE_DIR --out {path.name} --fresh`")
        names = [str(x) for x in data["names"].reshape(-1)]
        templates = np.asarray(data["templates"], np.float32)
        if templates.ndim != 2 or len(templates) != len(names):
            raise FaceDBError(f"face database {path}: templates {templates.shape} do not match {len(names)} names")
        counts = np.asarray(data.get("counts", np.ones(len(names))), np.int64).reshape(-1)
        if len(counts) != len(names):
            raise FaceDBError(f"face database {path}: {len(counts)} sample counts for {len(names)} names")
        sha = str(data["model_sha256"])
        stored_recipe = str(data["recipe"]) if "recipe" in data else ""
        name = str(data["model_name"]) if "model_name" in data else ""
        if model_sha256 is not None and sha != model_sha256:
            raise FaceDBError(
                f"face database {path} was made with another embedding model ({name or 'unknown file'}, "
                f"sha256 {sha[:12]}…), not the configured one (sha256 {model_sha256[:12]}…); its templates "
                "cannot be compared. Re-enrol with `streamcnn faces enroll PEOPLE_DIR --out "
                f"{path.name} --fresh` using this model"
            )
        if recipe is not None and stored_recipe != recipe:
            raise FaceDBError(f"face database {path} was made with input recipe {stored_recipe!r}, "
                              f"expected {recipe!r}; re-enrol with --fresh")
        norms = np.linalg.norm(templates, axis=1) if len(templates) else np.zeros(0)
        if len(norms) and np.any(np.abs(norms - 1) > 1e-3):
            log.info("face database %s: normalising %d template(s) stored without unit length",
                     path, int(np.sum(np.abs(norms - 1) > 1e-3)))
            templates = l2_normalise(templates)
        sums = np.asarray(data["sums"], np.float32) if "sums" in data else templates * counts[:, None]
        if sums.shape != templates.shape:
            sums = templates * counts[:, None]
        return cls(names, templates, counts, sums, sha, stored_recipe, name)


# ------------------------------------------------------------------------------------ enrolment
@dataclass
class EnrolReport:
    """What `enroll_folder` did.

    Attributes:
        people: name → number of photos used.
        no_face: photos where no face was found.
        several: photos with more than one face (the largest was used unless strict).
        unreadable: files that could not be decoded as images.
        loose: image files directly in PEOPLE_DIR (not in a person folder), ignored.
        hidden: hidden folders/images that were skipped (see `PeopleFolder`).
        embeddings: name → (K, D) unit embeddings of the photos used.
    """

    people: dict[str, int] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    several: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    loose: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class PeopleFolder:
    """What `person_photos` found in PEOPLE_DIR.

    Attributes:
        people: ``{name: sorted photo paths}``; a person's photos are every image file in their
            folder **and its sub-folders** (e.g. ``obama/2019/a.jpg``).
        loose: image files directly in PEOPLE_DIR (not in a person folder), ignored.
        hidden: hidden entries (name starting with ``.``) that were skipped: person folders like
            ``.git`` or ``.thumbnails``, and hidden folders or image files inside a person's folder.
    """

    people: dict[str, list[Path]] = field(default_factory=dict)
    loose: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)


def _photos_under(folder: Path, hidden: list[Path]) -> list[Path]:
    """Image files in ``folder`` and its sub-folders (hidden names skipped and recorded), sorted."""
    photos: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        base = Path(root)
        for d in sorted(dirs):
            if d.startswith("."):
                hidden.append(base / d)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            if Path(f).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            (hidden if f.startswith(".") else photos).append(base / f)
    return sorted(photos)


def person_photos(people_dir: Path) -> PeopleFolder:
    """The people of ``PEOPLE_DIR/<name>/`` (photos found recursively), loose images and hidden
    entries skipped (see `PeopleFolder`).

    Raises:
        FaceDBError: ``people_dir`` is not a folder.
    """
    if not people_dir.is_dir():
        raise FaceDBError(f"{people_dir} is not a folder (expected one sub-folder of photos per person)")
    found = PeopleFolder()
    for entry in sorted(people_dir.iterdir()):
        if entry.name.startswith("."):
            if entry.is_dir() or entry.suffix.lower() in IMAGE_SUFFIXES:
                found.hidden.append(entry)
        elif entry.is_dir():
            found.people[entry.name] = _photos_under(entry, found.hidden)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            found.loose.append(entry)
    return found


def enroll_folder(people_dir: str | Path, detector, embedder: FaceEmbedder) -> EnrolReport:
    """Embed the largest face of every photo in ``PEOPLE_DIR/<name>/`` (and its sub-folders;
    hidden folders and files are skipped and listed in the report).

    Args:
        people_dir: folder with one sub-folder per person (the folder name is the person's name).
        detector: a `streamcnn.ops.faces.FaceDetector` whose format gives 5 landmarks (its
            `~streamcnn.ops.faces.FaceDetector.detect` returns `streamcnn.Detections`).
        embedder: the `FaceEmbedder`.

    Returns:
        An `EnrolReport` (people with no usable photo are absent from ``people``).
    """
    found = person_photos(Path(people_dir))
    rep = EnrolReport(loose=found.loose, hidden=found.hidden)
    for name, photos in found.people.items():
        embs = []
        for photo in photos:
            img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if img is None:
                rep.unreadable.append(photo)
                continue
            faces = detector.detect(img)
            if not len(faces):
                rep.no_face.append(photo)
                continue
            if faces.landmarks is None:
                raise FaceDBError(f"the face detector ({detector.format}) gives no landmarks; enrolment "
                                  "needs a 5-point detector (yunet or scrfd)")
            if len(faces) > 1:
                rep.several.append(photo)
            wh = faces.xyxy[:, 2:] - faces.xyxy[:, :2]
            i = int(np.argmax(wh[:, 0] * wh[:, 1]))
            embs.append(embedder.embed(img, faces.landmarks[i:i + 1])[0])
        if embs:
            rep.embeddings[name] = np.stack(embs)
            rep.people[name] = len(embs)
    return rep


def describe(db: FaceDB) -> str:
    """A human-readable summary (``streamcnn faces list``)."""
    lines = [f"{people_count(len(db))}, {db.dim}-d templates, embedding model {db.model_name or '?'} "
             f"(sha256 {db.model_sha256[:12]}…)"]
    width = max([len(n) for n in db.names] + [4])
    for n, c in zip(db.names, db.counts):
        lines.append(f"  {n:<{width}}  {int(c)} photo{'s' if c != 1 else ''}")
    return "\n".join(lines)


def recipe_json(db: FaceDB) -> str:
    """Database metadata as JSON (for scripts)."""
    return json.dumps({"model_name": db.model_name, "model_sha256": db.model_sha256, "recipe": db.recipe,
                       "people": [{"name": n, "photos": int(c)} for n, c in zip(db.names, db.counts)]})


__all__: Sequence[str] = [
    "DEFAULT_COSINE_THRESHOLD", "DEFAULT_EMBEDDING_MODEL", "EnrolReport", "FaceDB", "FaceDBError", "FaceEmbedder",
    "PeopleFolder", "RECIPE", "UNKNOWN", "cosine_to_l2", "describe", "enroll_folder", "l2_normalise", "l2_to_cosine",
    "people_count", "person_photos",
]
