"""Finding the videos of a run's inputs: files, folders (searched recursively), manifests, and
folders of images that are one video each."""

from __future__ import annotations

from pathlib import Path

from fer_lightning.media.video import is_image_sequence

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def find_sources(inputs: list[str | Path]) -> list[tuple[Path, str]]:
    """Video files named directly, found in folders (recursively), or listed one per line
    (first CSV column) in a manifest file with a ``.txt``/``.csv`` suffix, each with its path
    relative to its input root (POSIX): under a folder, the folder's own name and the path
    below it (``batch1/clip001.mp4``); in a manifest, the path as written; a file named
    directly, its name. A folder that directly holds images is one video (an image sequence,
    as AFEW-VA ships its clips). Each video comes once, in first-seen order, however often it
    is listed (a per-frame manifest names its video on every row): linear in the rows."""
    out: dict[Path, str] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            if is_image_sequence(item):
                out.setdefault(item, item.name)
                continue
            for p in sorted(p for p in item.rglob("*") if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
                            or (p.is_dir() and is_image_sequence(p))):
                out.setdefault(p, (Path(item.resolve().name) / p.relative_to(item)).as_posix())
        elif item.suffix.lower() in (".txt", ".csv"):
            for line in item.read_text().splitlines():
                name = line.split(",")[0].strip().strip('"')
                if name and not name.startswith("#") and name.lower() not in ("path", "video", "video_path"):
                    p = Path(name)
                    out.setdefault(p if p.is_absolute() else item.parent / p, p.name if p.is_absolute() else p.as_posix())
        else:
            out.setdefault(item, item.name)
    return list(out.items())


def find_videos(inputs: list[str | Path]) -> list[Path]:
    """The videos of :func:`find_sources`, without their relative paths."""
    return [path for path, _ in find_sources(inputs)]
