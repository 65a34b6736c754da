"""``streamcnn faces``: build and inspect face enrolment databases.

* ``streamcnn faces enroll PEOPLE_DIR --out faces.npz [--strict] [--fresh]``: one sub-folder per
  person (the folder name is the name), one or more photos each; photos in sub-folders of a
  person's folder count too (``obama/2019/a.jpg``), hidden folders and files (``.name``) are
  skipped with a message. The largest face of each photo is aligned and embedded; a person's
  template is the re-normalised mean. People already in an existing ``--out`` database who are not
  in PEOPLE_DIR are kept as they are (not re-embedded); people in PEOPLE_DIR replace their old
  entry. Photos without a face are reported by file name and skipped; with ``--strict`` they, and
  photos with several faces, are errors and nothing is written. ``--detector`` must be a
  5-landmark face detector (yunet or scrfd), ``--model`` an embedding model.
* ``streamcnn faces list faces.npz [--json]``: names, photo counts and the embedding model.
* ``streamcnn faces remove faces.npz NAME...``: remove people (a name given twice is removed once).

Exit codes: 0 success, 2 user error (one-line message on stderr, no traceback), 1 other failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import StreamcnnError
from .facedb import (
    DEFAULT_EMBEDDING_MODEL,
    FaceDB,
    FaceDBError,
    FaceEmbedder,
    describe,
    enroll_folder,
    people_count,
    person_photos,
    recipe_json,
)


class UsageError(StreamcnnError):
    """A wrong option value (exit code 2)."""

    exit_code = 2


def _fail(exc: StreamcnnError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _check_device(device: str) -> None:
    """The same device check as every stage's ``device`` option (incl. "cuda needs the GPU build")."""
    from pydantic import ValidationError

    from .modelstage import DeviceParams

    try:
        DeviceParams(device=device)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        raise UsageError(f"--device: {cause if cause is not None else err['msg']}") from None


def _check_family(option: str, model: str, family: str, what: str) -> None:
    """Refuse a registry model of another family than ``family`` for ``option``."""
    from .registry import family_mismatch
    from .words import a_an

    mismatch = family_mismatch(model, (family,))
    if mismatch is not None:
        raise UsageError(f"{option} {model}: {a_an(mismatch.entry.family)} model, not {what}; "
                         f"use one of: {', '.join(mismatch.fitting)}")


_KINDS = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
          (b"BM", "a BMP image"), (b"RIFF", "a RIFF file (WebP image, AVI video ...)"))


def _not_a_database(path: Path) -> str | None:
    """Why the existing file ``path`` is certainly not a face database (not a zip archive, as an
    .npz is), or None. The advice never names ``path`` itself as ``--out``: it may be a photo."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None  # missing, a folder, unreadable: FaceDB.load says which
    if head.startswith(b"PK\x03\x04"):
        return None
    kind = next((f" (it is {what})" for magic, what in _KINDS if head.startswith(magic)), "")
    new = path.with_suffix(".npz")
    if new == path or new.exists():
        fix = ("a face database is the .npz file `streamcnn faces enroll PEOPLE_DIR --out NEW.npz` writes"
               if new == path else f"did you mean {new}?")
    else:
        fix = f"a face database is made with `streamcnn faces enroll PEOPLE_DIR --out {new}` (a new file)"
    return f"{path} is not a streamcnn face database{kind}; {fix}"


def _load_db(path: Path) -> FaceDB:
    """`FaceDB.load` for ``faces list`` and ``faces remove``; a file that is not a database at all
    (a photo given by mistake) is a `FaceDBError` whose advice never overwrites it."""
    why = _not_a_database(path)
    if why is not None:
        raise FaceDBError(why)
    return FaceDB.load(path, None, None)


def _load_models(detector: str, model: str, device: str):
    """The face detector and embedder for enrolment, through the core's model resolution."""
    from .ops.faces import FaceDetector, detector_format
    from .registry import resolve_model
    from .runtime import get_session

    _check_device(device)
    _check_family("--detector", detector, "face_detect", "a face detector")
    _check_family("--model", model, "embedding", "a face-embedding model")
    det_path, det_reg = resolve_model(detector)
    fmt = detector_format("auto", det_reg)
    if fmt is None:
        raise UsageError(f"--detector {detector}: not a face detector streamcnn knows (registry face detectors "
                         "with 5 landmarks: yunet_n_dynamic, yunet_n_320_320, scrfd_2.5g_bnkps)")
    if fmt.startswith("ultraface"):
        raise UsageError(f"--detector {detector} gives no face landmarks; enrolment needs a 5-point detector "
                         "(yunet_n_dynamic, yunet_n_320_320 or scrfd_2.5g_bnkps)")
    emb_path, _ = resolve_model(model)
    embedder = FaceEmbedder(get_session(emb_path, device, stage="faces enroll"))
    det = FaceDetector(get_session(det_path, device, stage="faces enroll"), registry_params=det_reg)
    return det, embedder


@click.group("faces")
def faces() -> None:
    """Face enrolment databases for the face_recognize stage."""


@faces.command("enroll")
@click.argument("people_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Database file (.npz) to create or update.")
@click.option("--strict", is_flag=True, help="Photos with no face or with several faces are errors.")
@click.option("--fresh", is_flag=True, help="Start a new database instead of updating --out.")
@click.option("--detector", default="yunet_n_dynamic", show_default=True,
              help="Face detector with 5 landmarks (yunet or scrfd), registry name or path.")
@click.option("--model", default=DEFAULT_EMBEDDING_MODEL, show_default=True,
              help="Embedding model, registry name or path.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, tensorrt or tensorrt:N.")
def enroll(people_dir: Path, out: Path, strict: bool, fresh: bool, detector: str, model: str, device: str) -> None:
    """Enrol the people in PEOPLE_DIR (PEOPLE_DIR/<name>/<photos>) into --out."""
    try:
        why = _not_a_database(out)
        if why is not None and out.suffix.lower() != ".npz":
            # never overwrite a photo given as --out by mistake (--fresh replaces only a broken .npz)
            raise FaceDBError(f"--out {out} exists and is not overwritten: {why}")
        found = person_photos(people_dir)
        if not found.people:
            raise FaceDBError(f"{people_dir} has no person folders (expected {people_dir}/<name>/<photos>)")
        det, embedder = _load_models(detector, model, device)
        db = None
        if out.exists() and not fresh:
            try:
                db = FaceDB.load(out, None)
            except FaceDBError as e:
                raise FaceDBError(f"{e} (or use --fresh to replace it)") from None
            if db.model_sha256 != embedder.sha256:
                raise FaceDBError(
                    f"{out} was made with another embedding model ({db.model_name or '?'}, sha256 "
                    f"{db.model_sha256[:12]}…); use --fresh to rebuild it with {embedder.path.name}")
        rep = enroll_folder(people_dir, det, embedder)
    except StreamcnnError as exc:
        _fail(exc)
    for p in rep.hidden:
        click.echo(f"skipped hidden {'folder' if p.is_dir() else 'file'} {p}", err=True)
    for p in rep.loose:
        click.echo(f"ignored {p}: photos go into a folder per person ({people_dir}/<name>/)", err=True)
    for p in rep.unreadable:
        click.echo(f"unreadable image: {p}", err=True)
    for p in rep.no_face:
        click.echo(f"no face found: {p}", err=True)
    for p in rep.several:
        click.echo(f"several faces in {p}" + ("" if strict else " (using the largest)"), err=True)
    missing = [n for n in found.people if n not in rep.people]
    for n in missing:
        click.echo(f"{n}: no usable photo in {people_dir / n}; not enrolled", err=True)
    if strict and (rep.no_face or rep.several or rep.unreadable or missing):
        click.echo(f"error: --strict: {len(rep.no_face)} photo(s) without a face, {len(rep.several)} with "
                   f"several faces, {len(rep.unreadable)} unreadable; {out} not written", err=True)
        sys.exit(2)
    if db is None:
        db = FaceDB(model_sha256=embedder.sha256, model_name=embedder.path.name)
    for name, emb in rep.embeddings.items():
        db.set_person(name, emb)
    if not len(db):
        click.echo(f"error: no face could be enrolled from {people_dir}; {out} not written", err=True)
        sys.exit(2)
    try:
        db.save(out)
    except StreamcnnError as exc:
        _fail(exc)
    done = ", ".join(f"{n} ({c} photo{'s' if c != 1 else ''})" for n, c in rep.people.items()) or "nobody"
    click.echo(f"enrolled {done} → {out} ({people_count(len(db))})")


@faces.command("list")
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(database: Path, as_json: bool) -> None:
    """List the people in DATABASE."""
    try:
        db = _load_db(database)
    except StreamcnnError as exc:
        _fail(exc)
    click.echo(recipe_json(db) if as_json else describe(db))


@faces.command("remove")
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("names", nargs=-1, required=True)
def remove(database: Path, names: tuple[str, ...]) -> None:
    """Remove NAMES from DATABASE (nobody else is re-embedded)."""
    names = tuple(dict.fromkeys(names))  # a name given twice is removed once
    try:
        db = _load_db(database)
        unknown = [n for n in names if n not in db.names]
        if unknown:
            from .words import suggest

            hints = "".join(suggest(n, db.names) for n in unknown)
            people = ", ".join(db.names) or "none"
            raise FaceDBError(f"not in {database}: {', '.join(unknown)}{hints} (people: {people}); nothing removed")
        for n in names:
            db.remove(n)
        db.save(database)
    except StreamcnnError as exc:
        _fail(exc)
    click.echo(f"removed {', '.join(names)} from {database} ({people_count(len(db))} left)")


__all__ = ["faces"]
