"""What a store already holds: each source video's ``done/<source_id>.json`` record (written
last, so a killed run leaves nothing that looks done), whether a record still stands for the
same file, the ids the index already gives, and the refusal to put a different video in
another's place."""

from __future__ import annotations

import json
from pathlib import Path

from fer_lightning.errors import UserInputError
from fer_lightning.media.fingerprint import file_fingerprint


def done_path(store: Path, video_id: str) -> Path:
    return store / "done" / f"{video_id}.json"


def same_source(done: dict, source: Path, fingerprint: str) -> bool:
    """Whether a done record was made from this very file: the same content fingerprint (a
    record from before fingerprints were kept: the same resolved path)."""
    if done.get("fingerprint"):
        return done["fingerprint"] == fingerprint
    # a record from before fingerprints, which was also read without the display rotation:
    # the same path, and a video that was not turned
    from fer_lightning.media.video import display_rotation

    return Path(done.get("source", "")).resolve() == source.resolve() and \
        (source.is_dir() or display_rotation(source) == 0)


def finished_record(store: Path, video_id: str, policy: str, source: Path, fingerprint: str) -> dict | None:
    """The done record of a source video whose outputs are all in place, made from the same
    file (its content, not its name) with the same face policy (main, all, two_person); None
    when the video must be (re)done."""
    path = done_path(store, video_id)
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    if done.get("faces") != policy or not same_source(done, source, fingerprint):
        return None
    for out in done["outputs"]:
        if not ((store / "videos" / f"{out['video_id']}.mp4").exists() and (store / "meta" / f"{out['video_id']}.csv").exists()):
            return None
    return done


def clear_unfinished(store: Path, video_id: str) -> None:
    """Remove what a killed or superseded run of this source left: temporary face videos and
    the outputs of a done record that no longer holds."""
    for tmp in (store / "tmp").glob(f"{video_id}.t*.mp4"):
        tmp.unlink(missing_ok=True)
    done = done_path(store, video_id)
    if done.exists():
        for out in json.loads(done.read_text())["outputs"]:
            (store / "videos" / f"{out['video_id']}.mp4").unlink(missing_ok=True)
            (store / "meta" / f"{out['video_id']}.csv").unlink(missing_ok=True)
        done.unlink()


def refuse_other_videos(store: Path, sources: list[tuple[Path, str]]) -> None:
    """Raise :class:`~fer_lightning.errors.UserInputError` when an input would take the id of a
    different video already in the store (another corpus's ``videos/x.mp4``): done, it would be
    skipped and its labels paired with the other video's faces; redone, the other video's faces
    would be lost. A source changed in place (same path, new content) is redone instead."""
    clashes = []
    for source, vid in sources:
        path = done_path(store, vid)
        if not path.is_file() or not source.exists():
            continue
        done = json.loads(path.read_text())
        if Path(done.get("source", "")).resolve() == source.resolve():
            continue  # the same file, perhaps changed since: preprocess_video redoes it
        if not same_source(done, source, file_fingerprint(source)):
            clashes.append(f"{source} is not the video stored as {vid} (from {done.get('source')})")
    if clashes:
        raise UserInputError(f"{len(clashes)} inputs would take the place of other videos in the store {store}: "
                             + "; ".join(clashes[:5]) + (" ..." if len(clashes) > 5 else "")
                             + ". Preprocess them into a store of their own, or delete the store's done/<id>.json "
                             "of each to replace the stored video")


def given_ids(store: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The ids a store's index already gives to sources, by resolved source path and by path
    under the input root: kept, so a rerun or a run over more videos renames nothing."""
    import pandas as pd

    index = store / "index.csv"
    if not index.is_file():
        return {}, {}
    table = pd.read_csv(index, dtype=str, keep_default_na=False)
    by_source = {str(Path(src).resolve()): sid for src, sid in zip(table["source"], table["source_id"], strict=True)}
    by_rel = dict(zip(table["source_rel"], table["source_id"], strict=True)) if "source_rel" in table.columns else {}
    return by_source, by_rel
