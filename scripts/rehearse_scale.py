"""A rehearsal of agf at FMA sizes: build a collection in FMA's exact layout, run agf's stages on it one by one as
subprocesses, and measure each stage's wall time, peak memory, disk and file count; with two or more sizes, the
growth exponent b of cost ~ tracks^b per stage and projections to FMA medium, FMA large and fma_full.

    # FMA medium's shape (25,000 clips of 30 s), every stage, short epochs:
    .venv/bin/python scripts/rehearse_scale.py --shape medium --root /big/disk/rehearse
    # growth exponents from two sizes of FMA medium's shape, and projections:
    .venv/bin/python scripts/rehearse_scale.py --shape medium --sizes 5000,25000 --root /big/disk/rehearse
    # FMA large's shape (106,574 clips, 161 genres): only the stages whose memory, disk or files grow with it:
    .venv/bin/python scripts/rehearse_scale.py --shape large --stages scaling --root /big/disk/rehearse
    # a check at a small size (a few minutes on 2 cores):
    .venv/bin/python scripts/rehearse_scale.py --shape medium --sizes 200,400 --clips 64 --epochs 1

The collection (ROOT/collection-N): fma_metadata/tracks.csv (FMA's three header lines, 52 columns) and genres.csv,
and fma_audio/000/000002.mp3 ... Its counts follow the shape, scaled to N tracks in the same proportions:

- medium: 25,000 tracks; FMA medium's 16 top genres with its per-genre counts (MEDIUM_GENRE_TRACKS: the FMA
  authors' published counts of fma_medium, Rock 7,103 down to Easy Listening 21; FMA-FORMAT.md gives only the
  range 21 to 7,103); 5,152 albums (the paper); 3,833 artists (FMA large's ratio, 16,341 artists per 106,574
  tracks, applied to 25,000: FMA medium's own artist count is not in our sources); the official split
  19,922 / 2,505 / 2,573 in (set, split), artist-disjoint and stratified by genre.
- large: 106,574 tracks, 161 genres (16 top, 145 sub-genres), 16,341 artists, 14,854 albums, split 80/10/10;
  top genres in FMA medium's proportions. Every track has a top genre here, whereas real FMA large has tracks
  whose genres have several roots (no (track, genre_top); agf drops them): large is an upper bound.
- Each artist has one top genre and two of its sub-genres ((track, genres) lists one or both, for task s); its
  tracks are spread over its albums; tracks per artist are skewed (log-normal weights), at least 2 where the
  artist's genre and split cell allows. Floors at small N: every genre at least 3 tracks, one artist per
  (genre, split) cell that has tracks, one album per artist.

What is faked, and why:

- Audio: rendering 100k distinct clips would take days, so `--clips` distinct 30-s clips (44.1 kHz stereo MP3 at
  320 kbit/s, agf's synthetic renderer: 16 genres x voices x clips) are rendered once and HARD-LINKED under many
  track ids: the tracks of one artist link to the clips of one voice of its genre, so an artist's tracks sound
  alike (artist groups have something to find). Decoding and features cost what distinct files cost; the page
  cache holds fewer distinct audio bytes than a real collection would (prepare reads audio once per track).
- Epochs: `--epochs` (default 2) for the nets and the transfer MLP, instead of 200 and 50: the per-epoch cost is
  measured, not a converged model.
- transfer-windows (the scaling mode's transfer MLP): window features of the real shape (tracks x 61 windows of a
  30-s clip, `--fake-nets` nets x 256 dims) filled with random values by benchmarks/bench_transfer.py
  (--windows --nets --dim --out), instead of computing them with trained nets; when that benchmark is absent the
  stage is recorded as a TODO and skipped.

Measured per stage (each an `agf` command, except `reads`: random 1-s crops from the store prepare wrote, and
`transfer-windows`): wall seconds; max RSS of the largest single process of the stage's tree (os.wait4, what
`/usr/bin/time -v` reports); the peak of the summed PSS of the whole tree (sampled from /proc every 0.5 s, Linux;
memory-mapped store pages a process touched count); bytes allocated and files added under the work directory (a
walk before and after). `startup (agf)` (and `(reads)`, `(bench_transfer)`) is a process that only imports what
a stage's process imports: wall time and memory exponents are fitted net of it, so that they describe the
stage's work. Below a few thousand tracks the stages' other fixed costs (worker start-up, the dictionary and LDA
sizes) still dominate: measure growth at 5,000 and 25,000 tracks. Writes OUT.json and OUT.md. Refuses to start
when the root's free space is short of the estimate; deletes the collections, work directories and its own clips
afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BENCH_TRANSFER = REPO / "benchmarks" / "bench_transfer.py"

# FMA medium's top genres and their track counts (sum 25,000), as the FMA authors publish them for fma_medium,
# with FMA's genre ids (genres.csv).
MEDIUM_GENRE_TRACKS: dict[str, int] = {
    "Rock": 7103, "Electronic": 6314, "Experimental": 2251, "Hip-Hop": 2201, "Folk": 1519, "Instrumental": 1350,
    "Pop": 1186, "International": 1018, "Classical": 619, "Old-Time / Historic": 510, "Jazz": 384, "Country": 178,
    "Soul-RnB": 154, "Spoken": 118, "Blues": 74, "Easy Listening": 21,
}
TOP_GENRE_IDS: dict[str, int] = {
    "Rock": 12, "Electronic": 15, "Experimental": 38, "Hip-Hop": 21, "Folk": 17, "Instrumental": 1235, "Pop": 10,
    "International": 2, "Classical": 5, "Old-Time / Historic": 8, "Jazz": 4, "Country": 9, "Soul-RnB": 14,
    "Spoken": 20, "Blues": 3, "Easy Listening": 13,
}
SUBGENRES = 145  # FMA large: 161 genres, 16 of them top-level
FIRST_SUBGENRE_ID = 100  # made-up ids of the sub-genres (no root id lies in 100..244)
FMA_MAX_TRACK_ID = 155_320  # FMA's ids run from 2 to 155,320 over 106,574 tracks: the audio folders 000..155
KNOWN_BAD_IDS = frozenset({1486, 5574, 65753, 80391, 98558, 98559, 98560, 98571, 99134, 105247, 108925, 126981,
                           127336, 133297, 143992, 98565, 98566, 98567, 98568, 98569, 108924})
CLIP_SECONDS = 30.0
MIN_GENRE_TRACKS = 3
MAX_HARD_LINKS = 65_000  # ext4's limit of links per inode
CLIPS_PER_VOICE = 16
ARTIST_SKEW = 1.0  # sigma of the log-normal weights of tracks per artist
FMA_FULL_SECONDS = 343 * 86_400 / 106_574  # fma_full: 343 days of audio over 106,574 tracks (FMA's paper): 278 s


@dataclass(frozen=True)
class Shape:
    """An FMA collection's size: tracks, top-genre counts (MEDIUM_GENRE_TRACKS order), artists, albums, split."""

    name: str
    tracks: int
    genre_tracks: tuple[int, ...]
    artists: int
    albums: int
    splits: tuple[int, int, int]  # training, validation, test
    subset: str  # (set, subset) of every track, and dataset.subset


def apportion(total: int, weights: Sequence[float], low: Sequence[int], high: Sequence[int]) -> np.ndarray:
    """Integers in [low, high] summing to `total`, each as close to total x its weight's share as the bounds allow
    (largest remainders); ValueError if the bounds cannot sum to `total`."""
    low_a, high_a = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)
    if not low_a.sum() <= total <= high_a.sum():
        raise ValueError(f"cannot split {total} into {len(low_a)} parts between {low_a.sum()} and {high_a.sum()}")
    weights_a = np.asarray(weights, dtype=float)
    target = total * weights_a / weights_a.sum()
    x = np.clip(np.floor(target).astype(np.int64), low_a, high_a)
    while (left := total - int(x.sum())) != 0:
        step = 1 if left > 0 else -1
        movable = np.flatnonzero(x < high_a if step > 0 else x > low_a)
        gap = (target - x)[movable] * step  # the most short of its target first (or the most over it)
        x[movable[np.argsort(-gap, kind="stable")[:abs(left)]]] += step
    return x


MEDIUM = Shape("medium", 25_000, tuple(MEDIUM_GENRE_TRACKS.values()), 3_833, 5_152, (19_922, 2_505, 2_573), "medium")
LARGE = Shape("large", 106_574, tuple(apportion(106_574, MEDIUM.genre_tracks, [0] * 16, [106_574] * 16).tolist()),
              16_341, 14_854, (85_259, 10_657, 10_658), "large")
SHAPES = {"medium": MEDIUM, "large": LARGE}
SPLIT_NAMES = ("training", "validation", "test")


@dataclass(frozen=True)
class Layout:
    """The concrete counts of one collection: the shape scaled to `tracks`."""

    shape: str
    tracks: int
    genre_tracks: tuple[int, ...]
    cells: tuple[tuple[int, int, int], ...]  # per genre: tracks in training, validation, test
    artists: int
    albums: int
    splits: tuple[int, int, int]


def split_cells(genre_tracks: Sequence[int], splits: Sequence[int]) -> np.ndarray:
    """(genres, 3) tracks per genre and split: rows sum to genre_tracks, columns to splits, every genre keeps at
    least one training track."""
    cells = np.zeros((len(genre_tracks), 3), dtype=np.int64)
    total = sum(genre_tracks)
    for column in (1, 2):
        expected = np.asarray(genre_tracks) * splits[column] / total
        room = np.asarray(genre_tracks) - 1 - cells.sum(axis=1)
        cells[:, column] = apportion(splits[column], expected, [0] * len(genre_tracks), room)
    cells[:, 0] = np.asarray(genre_tracks) - cells[:, 1:].sum(axis=1)
    return cells


def scale(shape: Shape, tracks: int) -> Layout:
    """The shape scaled to `tracks` in the same proportions, with the floors the module docstring names."""
    genres = len(shape.genre_tracks)
    if tracks < MIN_GENRE_TRACKS * genres:
        raise SystemExit(f"--tracks {tracks}: at least {MIN_GENRE_TRACKS * genres} ({MIN_GENRE_TRACKS} per genre)")
    genre_tracks = apportion(tracks, shape.genre_tracks, [MIN_GENRE_TRACKS] * genres, [tracks] * genres)
    splits = apportion(tracks, shape.splits, [0, 0, 0], [tracks] * 3)
    cells = split_cells(genre_tracks, splits)
    artists = max(round(tracks * shape.artists / shape.tracks), int((cells > 0).sum()))
    albums = round(tracks * shape.albums / shape.tracks)
    if shape.albums >= shape.artists:  # every artist has an album; not so in FMA large (album id -1)
        albums = max(albums, artists)
    return Layout(shape.name, tracks, tuple(genre_tracks.tolist()), tuple(map(tuple, cells.tolist())), artists,
                  albums, tuple(splits.tolist()))


def subgenre_tree() -> dict[int, list[int]]:
    """Top genre id -> its sub-genre ids: 145 sub-genres spread over the 16 top genres by size, at least 2 each."""
    counts = apportion(SUBGENRES, MEDIUM.genre_tracks, [2] * 16, [SUBGENRES] * 16)
    tree, next_id = {}, FIRST_SUBGENRE_ID
    for title, count in zip(MEDIUM_GENRE_TRACKS, counts):
        tree[TOP_GENRE_IDS[title]] = list(range(next_id, next_id + int(count)))
        next_id += int(count)
    return tree


def fma_track_ids(count: int) -> list[int]:
    """`count` track ids spread like FMA's (2 .. 155,320 for FMA large's count), none of FMA's known bad ids."""
    stride = (FMA_MAX_TRACK_ID - 2) / (LARGE.tracks + len(KNOWN_BAD_IDS))
    candidates = (2 + np.floor(np.arange(count + len(KNOWN_BAD_IDS)) * stride)).astype(int)
    return [int(i) for i in candidates if i not in KNOWN_BAD_IDS][:count]


def artist_cells(layout: Layout, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(genre index, split index, tracks) of every artist: artists spread over genres by size and within a genre
    over its splits, at least one per (genre, split) cell with tracks; tracks per artist log-normally skewed."""
    artists_per_genre = apportion(layout.artists, layout.genre_tracks,
                                  [sum(1 for n in row if n) for row in layout.cells], layout.genre_tracks)
    artists = []
    for genre, row in enumerate(layout.cells):
        per_split = apportion(int(artists_per_genre[genre]), row, [1 if n else 0 for n in row], row)
        for split, (count, n_artists) in enumerate(zip(row, per_split)):
            if n_artists:
                floor = 2 if count >= 2 * n_artists else 1
                weights = rng.lognormal(0.0, ARTIST_SKEW, n_artists)
                tracks = apportion(count, weights, [floor] * n_artists, [count] * n_artists)
                artists += [(genre, split, int(n)) for n in tracks]
    return artists


def collection_frames(layout: Layout, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flat tracks frame and the genres frame that agf.datasets.fma_layout.write_fma_metadata takes; the tracks
    frame also holds `voice` (genre index, the artist's rank in its genre) and `position` (in the artist's
    tracks), which pick its audio clip."""
    tree, titles = subgenre_tree(), list(MEDIUM_GENRE_TRACKS)
    artists = artist_cells(layout, np.random.default_rng(seed))
    albums = artist_albums(layout.albums, [n for _, _, n in artists])
    rows, album_id, genre_artists = [], 0, [0] * len(titles)
    for artist_id, ((genre, split, count), n_albums) in enumerate(zip(artists, albums), 1):
        top = TOP_GENRE_IDS[titles[genre]]
        subs, rank = tree[top], genre_artists[genre]
        genre_artists[genre] += 1
        main, second = subs[rank % len(subs)], subs[(rank + 1) % len(subs)]
        for chunk in np.array_split(np.arange(count), max(1, int(n_albums))):
            album_id += 1 if n_albums else 0
            for position in chunk:
                listed = [main] if position % 3 else [main, second]
                rows.append({
                    "artist_id": artist_id, "artist_name": f"Artist {artist_id}",
                    "album_id": album_id if n_albums else -1, "album_title": f"Album {album_id}" if n_albums else "",
                    "title": f"Track {len(rows) + 1}", "genre_top": titles[genre], "genres": listed,
                    "genres_all": [top, *listed], "split": SPLIT_NAMES[split], "subset": layout.shape,
                    "duration": int(CLIP_SECONDS), "voice": (genre, rank), "position": int(position),
                })
    tracks = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    tracks.insert(0, "track_id", fma_track_ids(len(tracks)))
    return tracks, genres_frame(tree, tracks)


def artist_albums(albums: int, artist_tracks: Sequence[int]) -> np.ndarray:
    """Albums per artist: at least one each, the rest by track count; with fewer albums than artists (FMA large),
    one album each for the artists with the most tracks and none (album id -1) for the others."""
    if albums >= len(artist_tracks):
        return apportion(albums, artist_tracks, [1] * len(artist_tracks), artist_tracks)
    counts = np.zeros(len(artist_tracks), dtype=np.int64)
    counts[np.argsort(artist_tracks, kind="stable")[::-1][:albums]] = 1
    return counts


def genres_frame(tree: dict[int, list[int]], tracks: pd.DataFrame) -> pd.DataFrame:
    """genres.csv's frame: the 16 top genres and 145 sub-genres, #tracks counted over (track, genres_all)."""
    counts = pd.Series([g for ids in tracks["genres_all"] for g in ids]).value_counts()
    rows = []
    for title, top in TOP_GENRE_IDS.items():
        rows.append((top, 0, title, top))
        rows += [(sub, top, f"{title} {number + 1}", top) for number, sub in enumerate(tree[top])]
    return pd.DataFrame(
        {"#tracks": [int(counts.get(r[0], 0)) for r in rows], "parent": [r[1] for r in rows],
         "title": [r[2] for r in rows], "top_level": [r[3] for r in rows]},
        index=pd.Index([r[0] for r in rows], name="genre_id"),
    )


def write_collection(layout: Layout, root: Path, voices: Sequence[Sequence[Sequence[Path]]]) -> tuple[Path, Path]:
    """Write FMA's metadata and hard-link every track's audio file to a clip of its artist's voice
    (voices[genre][voice] = that voice's clip files); return (metadata_dir, audio_dir)."""
    from agf.datasets.fma_layout import fma_audio_path, write_fma_metadata

    metadata_dir, audio_dir = root / "fma_metadata", root / "fma_audio"
    tracks, genres = collection_frames(layout)
    for track_id, (genre, rank), position in zip(tracks["track_id"], tracks["voice"], tracks["position"]):
        genre_voices = voices[genre]
        clips = genre_voices[rank % len(genre_voices)]
        path = fma_audio_path(audio_dir, track_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(clips[(rank // len(genre_voices) + position) % len(clips)], path)
    write_fma_metadata(metadata_dir, tracks.drop(columns=["voice", "position"]), genres)
    return metadata_dir, audio_dir


# -- distinct clips ---------------------------------------------------------------------------------


def clip_settings(clips: int) -> dict[str, int]:
    """The synthetic corpus of about `clips` clips: 16 genres x voices (synth artists) x clips per voice."""
    voices = max(1, clips // (16 * CLIPS_PER_VOICE))
    return {"n_genres": 16, "artists_per_genre": voices, "albums_per_artist": 1,
            "tracks_per_album": max(1, clips // (16 * voices))}


def render_clips(clips_dir: Path, clips: int, workers: int) -> list[list[list[Path]]]:
    """Render (or reuse, when complete) the distinct 30-s clips with agf's synthetic renderer; return
    voices[genre][voice] = that voice's clip files."""
    from agf.config import SynthConfig
    from agf.datasets.fma_layout import fma_audio_path
    from agf.datasets.synth import build_collection, synthesize_corpus
    from agf.datasets.synth.corpus import AUDIO_DIR

    config = SynthConfig(**clip_settings(clips), clip_seconds=CLIP_SECONDS, label_noise=0.0, bitrate=320_000)
    synthesize_corpus(clips_dir, config, workers=workers, progress=True)
    collection = build_collection(config)
    voices: list[list[list[Path]]] = [[[] for _ in range(config.artists_per_genre)] for _ in range(16)]
    for track in collection.tracks:
        artist = collection.artist(track.artist_id)
        voices[artist.genre_id - 1][(artist.artist_id - 1) % config.artists_per_genre].append(
            fma_audio_path(clips_dir / AUDIO_DIR, track.track_id))
    return voices


# -- measuring one subprocess -----------------------------------------------------------------------


def tree_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, files) under `path`; (0, 0) when it does not exist."""
    allocated, files = 0, 0
    for folder, _, names in os.walk(path):
        for name in names:
            allocated += os.lstat(os.path.join(folder, name)).st_blocks * 512
            files += 1
    return allocated, files


def _descendants(root_pid: int) -> list[int]:
    """root_pid and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def _memory_bytes(pid: int) -> tuple[int, int]:
    """A process's (proportional set size: shared pages split among their users, anonymous memory: without the
    pages of mapped files such as the feature store's packs, which the kernel may drop); (0, 0) once it is gone."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Pss:", "Anonymous:")):
                found[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found.get("Pss", 0), found.get("Anonymous", 0)


class TreeSampler(threading.Thread):
    """Samples the summed PSS and anonymous memory of a process tree every `interval` seconds; `peak` and
    `anon_peak` are the largest sums seen."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak, self.anon_peak = pid, interval, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            sizes = [_memory_bytes(pid) for pid in _descendants(self.pid)]
            self.peak = max(self.peak, sum(pss for pss, _ in sizes))
            self.anon_peak = max(self.anon_peak, sum(anon for _, anon in sizes))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measurement:
    """One stage at one size."""

    stage: str
    tracks: int
    command: list[str]
    status: str  # ok, failed (rc), skipped (why), todo (why)
    wall_s: float | None = None
    max_rss_mb: float | None = None  # the largest single process of the tree (os.wait4; /usr/bin/time -v's)
    tree_pss_peak_mb: float | None = None  # the whole tree, summed, sampled
    tree_anon_peak_mb: float | None = None  # the whole tree's anonymous memory (no mapped file pages), sampled
    disk_mb: float | None = None  # allocated bytes added under the work directory
    files: int | None = None  # files added under the work directory
    load_before: float | None = None
    extra: dict = field(default_factory=dict)
    output_tail: str = ""


def measure(stage: str, tracks: int, command: list[str], watch: Path | None, log_dir: Path) -> tuple[Measurement, str]:
    """Run `command`, measuring it (disk and files added under `watch`, if given); return the measurement and its
    standard output."""
    disk_before, files_before = tree_usage(watch) if watch else (0, 0)
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{tracks}-{stage}.out", log_dir / f"{tracks}-{stage}.err"
    load = os.getloadavg()[0]
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO)
        sampler = TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    disk_after, files_after = tree_usage(watch) if watch else (0, 0)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    return Measurement(
        stage, tracks, command, "ok" if process.returncode == 0 else f"failed (rc {process.returncode})",
        wall_s=round(wall, 2), max_rss_mb=round(usage.ru_maxrss / 1024, 1),
        tree_pss_peak_mb=round(sampler.peak / 2**20, 1) if sampler.peak else None,
        tree_anon_peak_mb=round(sampler.anon_peak / 2**20, 1) if sampler.anon_peak else None,
        disk_mb=round((disk_after - disk_before) / 2**20, 2) if watch else None,
        files=files_after - files_before if watch else None, load_before=load,
        output_tail=(stdout + stderr)[-3000:] if process.returncode else "",
    ), stdout


# -- the stages -------------------------------------------------------------------------------------

ALL_STAGES = ("prepare", "reads", "factors", "train", "transfer", "evaluate")
SCALING_STAGES = ("prepare", "reads", "factors", "transfer-windows")
STAGES = (*ALL_STAGES, "transfer-windows")
NEEDS = {"reads": "prepare", "factors": "prepare", "train": "factors", "transfer": "train", "evaluate": "transfer"}
# How each stage's (wall, memory, disk, files) grow with track length at a fixed track count: the exponent d of
# (278 s / 30 s)^d for fma_full. Assumptions from what each stage does, not measurements.
DURATION_EXPONENTS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "prepare": ((1, 1, 1, 0), "decodes every second; stores every frame; memory: an upper bound (a worker holds "
                "one whole waveform, the longest track's; its imports do not grow); files do not grow with seconds"),
    "reads": ((0, 0, 0, 0), "a fixed number of 1-s crops (a 9x larger store falls out of the page cache: "
              "cold reads, not modelled)"),
    "factors": ((1, 1, 0, 0), "upper bound: word assignment counts every frame (the dictionary fits "
                "frames_per_track frames, LDA sees artists only)"),
    "train": ((0, 0, 0, 0), "one 1-s crop per track per epoch, whatever its length"),
    "transfer": ((1, 1, 1, 0), "window features and the MLP: windows grow with seconds"),
    "evaluate": ((1, 1, 0, 0), "upper bound: window-level predictions and MFCC statistics"),
    "transfer-windows": ((1, 1, 1, 0), "windows grow with seconds"),
}


@dataclass
class Context:
    """One size's paths and what earlier stages produced."""

    tracks: int
    workdir: Path
    config: Path
    python: Path
    agf: Path
    args: argparse.Namespace
    net_dirs: list[str] = field(default_factory=list)
    transfer_dir: str = ""


def windows_per_clip(hop: int) -> int:
    """Windows of one 30-s clip at agf's default features (1,292 frames) and this hop."""
    from agf.config import PATCH_FRAMES, FeatureConfig
    from agf.transfer.windows import window_starts

    features = FeatureConfig()
    return len(window_starts(1 + int(CLIP_SECONDS * features.sample_rate) // features.hop_length, PATCH_FRAMES, hop))


def stage_command(stage: str, context: Context) -> list[str] | str:
    """The command of a stage, or why it cannot run."""
    args, agf = context.args, str(context.agf)
    common = ["-c", str(context.config), "-w", str(context.workdir), "-q"]
    seed = ["--seed", "0"]
    factor_tasks = ",".join(args.factor_tasks)
    if stage == "prepare":
        return [agf, "prepare", *common]
    if stage == "reads":
        return [str(context.python), str(Path(__file__).resolve()), "--read-store", str(context.workdir),
                "--reads", str(args.reads)]
    if stage == "factors":
        return [agf, "factors", *common, "--tasks", factor_tasks]
    if stage == "train":
        return [agf, "train", *common, "--arch", "stn", "--tasks", f"g,{factor_tasks}", "--epochs",
                str(args.epochs), *seed]
    if stage == "transfer":
        return [agf, "transfer", *context.net_dirs, *common, "--epochs", str(args.epochs), *seed] \
            if context.net_dirs else "no nets from the train stage"
    if stage == "evaluate":
        out = context.workdir / "evaluation" / "rehearsal"
        return [agf, "evaluate", context.transfer_dir, *common, "-o", str(out), *seed] \
            if context.transfer_dir else "no transfer directory from the transfer stage"
    if not BENCH_TRANSFER.is_file():
        return (f"TODO: {BENCH_TRANSFER.relative_to(REPO)} is not there yet; when it is, this stage runs it with "
                f"--windows {context.tracks * windows_per_clip(args.hop)} --nets {args.fake_nets} --dim 256 --out "
                "WORKDIR/bench-transfer")
    return [str(context.python), str(BENCH_TRANSFER), "--windows", str(context.tracks * windows_per_clip(args.hop)),
            "--nets", str(args.fake_nets), "--dim", "256", "--threads", str(max(1, args.threads)),
            "--out", str(context.workdir / "bench-transfer")]


def take_outputs(stage: str, stdout: str, measurement: Measurement, context: Context) -> None:
    """What later stages need from a stage's output: net directories, the transfer directory, crop reads."""
    lines = stdout.splitlines()
    if stage == "train":
        context.net_dirs = [line.removeprefix("net: ").strip() for line in lines if line.startswith("net: ")]
    elif stage == "transfer":
        found = [line.rsplit("predictions in ", 1)[1].strip() for line in lines if "predictions in " in line]
        context.transfer_dir = found[-1] if found else ""
    elif stage == "reads" and lines:
        measurement.extra = json.loads(lines[-1])
    elif stage == "transfer-windows":
        measurement.extra = {"stdout_tail": stdout[-1000:]}


def write_config(context: Context, metadata_dir: Path, audio_dir: Path, shape: Shape) -> None:
    """The run's config: the fma-medium preset (official split, the paper's factor sizes) with the collection, the
    tasks, the reduced epochs and the run settings of the command line."""
    from agf.config import config_to_toml, load_config

    args = context.args
    base = load_config("fma-medium")
    config = replace(
        base,
        dataset=replace(base.dataset, metadata_dir=str(metadata_dir), audio_dir=str(audio_dir), subset=shape.subset,
                        split="official"),
        factors=replace(base.factors, tasks=tuple(args.factor_tasks)),
        train=replace(base.train, epochs=args.epochs),
        transfer=replace(base.transfer, epochs=args.epochs, window_hop=args.hop),
        grid=replace(base.grid, tasks=("g", *args.factor_tasks), archs=("stn",), seeds=(0,)),
        run=replace(base.run, workers=args.workers, threads=args.threads, device=args.device,
                    workdir=str(context.workdir)),
    )
    context.config.write_text(config_to_toml(config))


def read_store(workdir: Path, reads: int, seed: int = 0) -> dict:
    """Random 1-s log-mel crops from the feature store of a work directory, as training reads them."""
    from agf.config import PATCH_FRAMES, load_config
    from agf.store import FeatureStore

    started = time.perf_counter()
    store = FeatureStore.open(workdir, load_config(workdir / "config.toml").features)
    ids = store.ok_ids()
    opened = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for index in rng.integers(0, len(ids), reads):
        mel = store.mel(ids[index])
        start = int(rng.integers(0, max(1, len(mel) - PATCH_FRAMES + 1)))
        np.array(mel[start:start + PATCH_FRAMES])
    elapsed = time.perf_counter() - started
    return {"tracks": len(ids), "reads": reads, "open_s": round(opened, 3), "crops_per_s": round(reads / elapsed, 1)}


def fill_store(workdir: Path) -> dict:
    """Complete the feature store of a stopped prepare (a --keep rehearsal): every track not prepared yet gets the
    arrays and facts of a prepared track whose audio is the same file (a hard link to the same clip), which is
    what prepare computes from the same bytes. Written with the store's own write_track, one process."""
    import pandas as pd
    from agf.config import load_config
    from agf.prepare import TrackJob, prepare_track
    from agf.store import ENTRY_COLUMNS, FeatureStore

    started = time.perf_counter()
    store = FeatureStore.open(workdir, load_config(workdir / "config.toml").features)
    tracks = pd.read_parquet(workdir / "tracks.parquet")
    inode = {track: os.stat(path).st_ino for track, path in zip(tracks["track_id"], tracks["audio_path"])}
    paths = dict(zip(tracks["track_id"], tracks["audio_path"]))
    done = store.entries().set_index("track_id")
    source = {inode[track]: track for track in done.index[done["status"] == "ok"] if track in inode}
    unprepared_clips = {inode[track]: track for track in tracks["track_id"] if inode[track] not in source}
    for track in unprepared_clips.values():  # a clip none of whose tracks was reached: prepare one of them
        prepare_track(TrackJob(track, paths[track], str(store.root), store.config))
    done = store.entries().set_index("track_id")
    source.update({inode[track]: track for track in unprepared_clips.values()})
    todo = [track for track in tracks["track_id"] if track not in done.index]
    # Each clip's entry and arrays read once: a write makes the store read its journals again on the next read.
    models = {node: ({key: value for key, value in done.loc[track].to_dict().items() if key in ENTRY_COLUMNS},
                     np.array(store.mel(track)), np.array(store.mfcc(track))) for node, track in source.items()}
    for track in todo:
        entry, mel, mfcc = models[inode[track]]
        store.write_track({**entry, "track_id": track, "audio_path": paths[track]}, mel, mfcc)
    return {"prepared": len(done), "clips_prepared_here": len(unprepared_clips), "copied": len(todo),
            "clips": len(source),
            "seconds": round(time.perf_counter() - started, 1)}


# -- growth exponents and projections ---------------------------------------------------------------

METRICS = ("wall_s", "max_rss_mb", "tree_pss_peak_mb", "tree_anon_peak_mb", "disk_mb", "files")
# The position of each metric in a DURATION_EXPONENTS tuple (wall, memory, disk, files).
DURATION_INDEX = {"wall_s": 0, "max_rss_mb": 1, "tree_pss_peak_mb": 1, "tree_anon_peak_mb": 1, "disk_mb": 2,
                  "files": 3}
TARGETS = (("FMA medium (25,000 x 30 s)", MEDIUM.tracks, CLIP_SECONDS),
           ("FMA large (106,574 x 30 s)", LARGE.tracks, CLIP_SECONDS),
           ("fma_full (106,574 x mean 278 s)", LARGE.tracks, FMA_FULL_SECONDS))


def startup_kind(stage: str) -> str:
    """Which start-up a stage's process pays: agf's pipeline, the reads stage's, or bench_transfer.py's."""
    return {"reads": "reads", "transfer-windows": "bench_transfer"}.get(stage, "agf")


def startup_command(kind: str, python: Path) -> list[str]:
    """A process that only starts up as a stage of `kind` does (its imports), then exits."""
    if kind == "reads":
        return [str(python), "-c", "import numpy, pandas, agf.config, agf.store"]
    if kind == "bench_transfer":
        return [str(python), str(BENCH_TRANSFER), "--help"]
    return [str(python), "-c", "import agf.cli, agf.pipeline"]


def exponent(sizes: Sequence[int], values: Sequence[float | None]) -> float | None:
    """b of value ~ size^b, least squares in log-log; None unless every value is positive over 2+ sizes."""
    if len(set(sizes)) < 2 or any(v is None or v <= 0 for v in values):
        return None
    return round(float(np.polyfit(np.log(sizes), np.log(values), 1)[0]), 3)


def start_up_cost(measurements: list[Measurement], stage: str, metric: str) -> float:
    """What a stage's process pays before its work starts (wall time and memory of its imports); 0 for disk."""
    name = f"startup ({startup_kind(stage)})"
    found = next((m for m in measurements if m.stage == name and m.status == "ok"), None)
    if found is None or metric not in ("wall_s", "max_rss_mb", "tree_pss_peak_mb", "tree_anon_peak_mb"):
        return 0.0
    return getattr(found, metric) or 0.0


def growth(measurements: list[Measurement]) -> dict[str, dict]:
    """Per stage measured ok at 2+ sizes: the exponent of each metric (wall time and memory net of the stage's
    start-up) and projections to TARGETS from the largest size measured (a negative exponent projected flat)."""
    result = {}
    for stage in dict.fromkeys(m.stage for m in measurements if not m.stage.startswith("startup")):
        rows = sorted((m for m in measurements if m.stage == stage and m.status == "ok"), key=lambda m: m.tracks)
        if len({m.tracks for m in rows}) < 2:
            continue
        sizes = [m.tracks for m in rows]
        exponents, projections = {}, {}
        for metric in METRICS:
            fixed = start_up_cost(measurements, stage, metric)
            net = [None if getattr(m, metric) is None else getattr(m, metric) - fixed for m in rows]
            b = exponent(sizes, net)
            exponents[metric] = b
            d = DURATION_EXPONENTS[stage][0][DURATION_INDEX[metric]]
            for name, tracks, seconds in TARGETS:
                projected = None if b is None else \
                    fixed + net[-1] * (tracks / sizes[-1]) ** max(b, 0.0) * (seconds / CLIP_SECONDS) ** d
                projections.setdefault(name, {})[metric] = None if projected is None else round(projected, 1)
        result[stage] = {"sizes": sizes, "exponents": exponents, "projections": projections}
    return result


# -- the report -------------------------------------------------------------------------------------


def _cell(value: object, unit: str = "") -> str:
    """A table cell: '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else str(value)


def markdown(report: dict) -> str:
    """The report as markdown: the setup, a row per stage and size, the exponents, the projections."""
    lines = [f"# agf rehearsal at FMA sizes: shape {report['shape']}", "",
             f"Measured {report['measured']} on {report['machine']}, agf commit {report['commit']}, "
             f"workers {report['settings']['workers']}, epochs {report['settings']['epochs']}.", ""]
    lines += [f"- {note}" for note in report["fakes"]]
    lines += ["", "## Collections", "", "| tracks | genres | artists | albums | split (training / validation / test) |",
              "|---:|---:|---:|---:|---|"]
    for layout in report["layouts"]:
        splits = " / ".join(f"{n:,}" for n in layout["splits"])
        lines.append(f"| {layout['tracks']:,} | {sum(1 for n in layout['genre_tracks'] if n)} | "
                     f"{layout['artists']:,} | {layout['albums']:,} | {splits} |")
    lines += ["", "## Stages", "", "max RSS: the largest single process (os.wait4, as /usr/bin/time -v); tree PSS: "
              "the summed proportional set size of the whole process tree, sampled every 0.5 s (both count the pages of the "
              "feature store's packs a process has mapped: page cache the kernel can drop); tree anon: the tree's "
              "anonymous memory, without mapped file pages, sampled the same way; disk and files: added under the "
              "work directory.", "",
              "| stage | tracks | status | wall s | max RSS MB | tree PSS MB | tree anon MB | disk MB | files | "
              "load before | notes |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in report["stages"]:
        notes = ", ".join(f"{k} {v}" for k, v in m["extra"].items() if k != "stdout_tail")
        cells = " | ".join(_cell(m[k]) for k in (*METRICS, "load_before"))
        lines.append(f"| {m['stage']} | {m['tracks']:,} | {m['status']} | {cells} | {notes} |")
    if report["growth"]:
        lines += ["", "## Growth exponents b (cost ~ tracks^b; wall and memory net of start-up)", "",
                  "| stage | sizes | wall | max RSS | tree PSS | tree anon | disk | files |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for stage, g in report["growth"].items():
            lines.append(f"| {stage} | {', '.join(map(str, g['sizes']))} | "
                         + " | ".join(_cell(g["exponents"][m]) for m in METRICS) + " |")
        lines += ["", "## Projections from the largest size measured", "",
                  "Extrapolations: far beyond the sizes measured they are only as good as the exponents. A "
                  "negative exponent (a cost that fell as the collection grew: noise, or fixed costs) is projected "
                  "flat. fma_full multiplies by (278 s / 30 s)^d, d per the last column (assumed, not measured).", "",
                  "| stage | target | wall s | max RSS MB | tree PSS MB | tree anon MB | disk MB | files | duration d "
                  "(wall, mem, disk, files): why |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for stage, g in report["growth"].items():
            d, why = DURATION_EXPONENTS[stage]
            for target, values in g["projections"].items():
                lines.append(f"| {stage} | {target} | " + " | ".join(_cell(values[m]) for m in METRICS)
                             + f" | {d}: {why} |")
    return "\n".join(lines) + "\n"


# -- the run ----------------------------------------------------------------------------------------


def estimated_bytes(tracks: int, args: argparse.Namespace) -> int:
    """Disk one size needs under the root: the feature store, window caches, the fake windows, 10 % margin."""
    from agf.config import FeatureConfig

    features = FeatureConfig()
    frames = 1 + int(CLIP_SECONDS * features.sample_rate) // features.hop_length
    needed = tracks * frames * (2 * features.n_mels + 4 * features.n_mfcc)
    if "transfer" in args.stages:
        needed += tracks * windows_per_clip(args.hop) * 256 * 2 * (1 + len(args.factor_tasks))
    if "transfer-windows" in args.stages:
        needed += tracks * windows_per_clip(args.hop) * 256 * 2 * args.fake_nets  # float16, as the benchmark
    return int(needed * 1.1)


def check_disk(root: Path, sizes: Sequence[int], args: argparse.Namespace) -> int:
    """SystemExit when the root's free space is short of the estimate; the estimate in bytes otherwise."""
    clips = args.clips * CLIP_SECONDS * 320_000 // 8 if not args.clips_dir else 0
    per_size = [estimated_bytes(n, args) for n in sizes]
    needed = int(clips + (sum(per_size) if args.keep else max(per_size)))
    probe = next(path for path in (root, *root.parents) if path.exists())
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise SystemExit(f"refusing to start: about {needed / 1e9:.1f} GB needed under {root}, {free / 1e9:.1f} GB "
                         "free; give --root on a larger disk, fewer --sizes, or fewer stages")
    return needed


def parse_stages(text: str | None, shape: str, existing: bool = False) -> tuple[str, ...]:
    """--stages: all, scaling, or names; each with the stages it needs (unless they ran in an --existing work
    directory), in pipeline order."""
    if text is None:
        text = "all" if shape == "medium" else "scaling"
    names = {"all": ALL_STAGES, "scaling": SCALING_STAGES}.get(text) or tuple(s.strip() for s in text.split(","))
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise SystemExit(f"--stages: unknown {', '.join(unknown)}; choose from all, scaling, {', '.join(STAGES)}")
    wanted = set(names)
    for stage in () if existing else names:
        while stage in NEEDS:
            stage = NEEDS[stage]
            wanted.add(stage)
    return tuple(s for s in STAGES if s in wanted)


def log(text: str) -> None:
    """A progress line with the time."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def run_size(tracks: int, shape: Shape, voices: list, args: argparse.Namespace, agf: Path) -> list[Measurement]:
    """Build the collection of one size, run the stages on a fresh work directory, clean up unless --keep."""
    collection, workdir = args.root / f"collection-{tracks}", args.root / f"work-{tracks}"
    config = args.root / f"config-{tracks}.toml"
    for path in (collection, workdir):
        if path.exists() != args.existing:
            raise SystemExit(f"{path} exists (an earlier --keep run?): agf would reuse its stages; delete it first, "
                             "or pass --existing" if path.exists() else f"--existing: {path} is not there")
    try:
        return run_stages(tracks, shape, voices, args, Context(tracks, workdir, config, Path(sys.executable), agf,
                                                               args), collection)
    finally:
        if not args.keep:
            shutil.rmtree(collection, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
            config.unlink(missing_ok=True)


def run_stages(tracks: int, shape: Shape, voices: list, args: argparse.Namespace, context: Context,
               collection: Path) -> list[Measurement]:
    """Write the collection and the config, then run and measure each stage; a stage whose input stage failed is
    skipped."""
    if not args.existing:
        layout = scale(shape, tracks)
        log(f"{tracks} tracks: writing the collection ({layout.artists} artists, {layout.albums} albums, split "
            f"{'/'.join(map(str, layout.splits))}; audio hard-linked to the distinct clips)")
        metadata_dir, audio_dir = write_collection(layout, collection, voices)
        context.workdir.mkdir(parents=True)
        write_config(context, metadata_dir, audio_dir, shape)
    results, failed = [], set()
    for stage in args.stages:
        command = stage_command(stage, context)
        if NEEDS.get(stage) in failed or isinstance(command, str):
            why = f"{NEEDS.get(stage)} did not finish" if NEEDS.get(stage) in failed else command
            status = "todo" if why.startswith("TODO") else "skipped"
            results.append(Measurement(stage, tracks, [], f"{status}: {why}"))
            failed.add(stage)
            log(f"{tracks} tracks: {stage}: {status}: {why}")
            continue
        log(f"{tracks} tracks: {stage} ...")
        measurement, stdout = measure(stage, tracks, command, context.workdir, args.root / "logs")
        if measurement.status == "ok":
            take_outputs(stage, stdout, measurement, context)
        else:
            failed.add(stage)
        results.append(measurement)
        log(f"{tracks} tracks: {stage}: {measurement.status}, {measurement.wall_s} s, max RSS "
            f"{measurement.max_rss_mb} MB, tree PSS {measurement.tree_pss_peak_mb} MB, anon {measurement.tree_anon_peak_mb} MB, "
            f"+{measurement.disk_mb} MB, "
            f"+{measurement.files} files {measurement.extra or ''}")
        if measurement.status != "ok":
            log(f"{tracks} tracks: {stage} output (the end):\n{measurement.output_tail}")
    return results


def fakes(args: argparse.Namespace) -> list[str]:
    """What the rehearsal fakes, for the report."""
    notes = [f"audio: {args.clips} distinct 30-s clips (agf's synthetic renderer, 44.1 kHz stereo MP3, 320 kbit/s), "
             "hard-linked under every track id; an artist's tracks link to one voice of its genre",
             "collection counts: see the docstring of scripts/rehearse_scale.py (FMA medium's genre counts, artists "
             "from FMA large's ratio, floors at small sizes)"]
    if {"train", "transfer"} & set(args.stages):
        notes.append(f"epochs: nets and transfer MLP {args.epochs} (the paper: 200 and 50)")
    if "transfer-windows" in args.stages:
        notes.append("transfer-windows: window features of the real shape filled with random values "
                     "(benchmarks/bench_transfer.py), not computed by trained nets")
    return notes


def git_commit() -> str:
    """The commit of the checkout (with '+changes' when the tree differs from it)."""
    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=REPO, capture_output=True, text=True).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="medium", help="FMA medium's or FMA large's counts")
    parser.add_argument("--tracks", type=int, help="scale the shape down to this many tracks (same proportions; "
                        "default: the shape's own size)")
    parser.add_argument("--sizes", help="several track counts, e.g. 5000,25000: each is run, and the growth "
                        "exponents and projections are reported (overrides --tracks)")
    parser.add_argument("--stages", help="all (default for medium): prepare, reads, factors, train, transfer, "
                        "evaluate; scaling (default for large): prepare, reads, factors, transfer-windows; or a "
                        "list of names (the stages they need are added)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/agf-rehearse"), help="where the clips, collections, "
                        "work directories and logs go (default /tmp/agf-rehearse)")
    parser.add_argument("--out", type=Path, default=Path("rehearse-scale"), help="writes OUT.json and OUT.md "
                        "(default ./rehearse-scale)")
    parser.add_argument("--clips", type=int, default=2048, help="distinct 30-s clips to render (default 2048: 16 "
                        "genres x 8 voices x 16); every track is a hard link to one of them")
    parser.add_argument("--clips-dir", type=Path, help="render the clips into (or reuse them from) this folder, on "
                        "the root's file system; it is never deleted (default: ROOT/clips, deleted unless --keep)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the nets and the transfer MLP (default 2; "
                        "the paper: 200 and 50)")
    parser.add_argument("--factor-tasks", default="m,d,s", help="artist-group tasks built and trained (default "
                        "m,d,s; add e where Essentia is installed)")
    parser.add_argument("--reads", type=int, default=20_000, help="random 1-s crops of the reads stage")
    parser.add_argument("--fake-nets", type=int, default=5, help="nets of the fake window features of "
                        "transfer-windows (default 5: the paper's largest STN case, g+m+d+e+s)")
    parser.add_argument("--hop", type=int, default=21, help="window hop in frames (agf's default 21)")
    parser.add_argument("-j", "--workers", type=int, default=2, help="agf's run.workers (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="agf's run.threads (default 0: torch's default; "
                        "1 when other busy processes share the cores)")
    parser.add_argument("--device", default="auto", help="agf's run.device (default auto)")
    parser.add_argument("--keep", action="store_true", help="keep the clips, collections and work directories")
    parser.add_argument("--read-store", type=Path, metavar="WORKDIR", help=argparse.SUPPRESS)  # the reads stage
    parser.add_argument("--fill-store", type=Path, metavar="WORKDIR",
                        help="complete the feature store of a stopped prepare in a kept work directory: each track "
                             "not prepared gets the arrays of a prepared track of the same audio file (the same "
                             "hard-linked clip), what prepare computes from those bytes; then exit")
    parser.add_argument("--existing", action="store_true",
                        help="run --stages on the collection and work directory of an earlier --keep run of the "
                             "same single size under --root (e.g. after --fill-store), instead of new ones")
    args = parser.parse_args(argv)
    args.factor_tasks = [t.strip() for t in args.factor_tasks.split(",") if t.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.read_store:
        print(json.dumps(read_store(args.read_store, args.reads)))
        return
    if args.fill_store:
        print(json.dumps(fill_store(args.fill_store)))
        return
    shape = SHAPES[args.shape]
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.tracks or shape.tracks]
    args.stages = parse_stages(args.stages, args.shape, args.existing)
    args.root = args.root.resolve()
    agf = Path(sys.executable).with_name("agf")
    if not agf.is_file():
        raise SystemExit(f"{agf} not found: run this script with the Python of agf's venv (.venv/bin/python)")
    if max(sizes) / max(1, args.clips) > MAX_HARD_LINKS:
        raise SystemExit(f"{max(sizes)} tracks over {args.clips} clips exceed {MAX_HARD_LINKS} links per file")
    needed = 0 if args.existing else check_disk(args.root, sizes, args)
    log(f"shape {shape.name}, sizes {sizes}, stages {', '.join(args.stages)}; about {needed / 1e9:.1f} GB needed "
        f"under {args.root}")
    args.root.mkdir(parents=True, exist_ok=True)
    clips_dir = args.clips_dir.resolve() if args.clips_dir else args.root / "clips"
    log(f"rendering {args.clips} distinct clips into {clips_dir} (reused when complete)")
    started = time.perf_counter()
    voices = render_clips(clips_dir, args.clips, args.workers)
    log(f"clips ready in {time.perf_counter() - started:.0f} s")
    log("measuring the start-up of the stages' processes (imports only)")
    kinds = {startup_kind(stage) for stage in args.stages if stage != "transfer-windows" or BENCH_TRANSFER.is_file()}
    measurements = [measure(f"startup ({kind})", 0, startup_command(kind, Path(sys.executable)), None,
                            args.root / "logs")[0] for kind in sorted(kinds)]
    for tracks in sizes:
        measurements += run_size(tracks, shape, voices, args, agf)
    report = {
        "shape": shape.name, "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "commit": git_commit(),
        "settings": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                     for k, v in vars(args).items() if k not in ("read_store", "fill_store")},
        "fakes": fakes(args),
        "layouts": [asdict(scale(shape, n)) for n in sizes],
        "stages": [asdict(m) for m in measurements],
        "growth": growth(measurements),
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(markdown(report))
    if not args.keep:
        shutil.rmtree(args.root / "logs", ignore_errors=True)
        if not args.clips_dir:
            shutil.rmtree(clips_dir, ignore_errors=True)
        if args.root.exists() and not any(args.root.iterdir()):
            args.root.rmdir()
    log(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
