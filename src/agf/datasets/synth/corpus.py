"""Writing the synthetic corpus in FMA's layout: audio rendered over worker processes, then metadata, then a marker.

OUT_DIR/
  agf-synth.json          the marker: generator version, [synth] settings, complete flag, summary
  fma_metadata/tracks.csv FMA's three header lines; extra (track, true_genre) and (track, label_noise)
  fma_metadata/genres.csv top genres and their sub-genres
  audio/000/000001.mp3    44.1 kHz stereo MP3 clips

A run first claims the folder (marker with complete = false), renders every clip that is not there yet
(each MP3 is written atomically, so a killed run resumes where it stopped), writes the metadata and
finally marks the corpus complete. All randomness of a track comes from (seed, track id), so the
result does not depend on the number of workers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agf.audio import write_audio
from agf.config import SynthConfig, config_to_dict
from agf.datasets.fma_layout import fma_audio_path, write_fma_metadata
from agf.datasets.synth.collection import Collection, build_collection
from agf.datasets.synth.render import TrackSpec, render_track
from agf.datasets.synth.style import track_spec
from agf.errors import SynthError
from agf.fileio import read_json, write_json_atomic
from agf.parallel import map_unordered

MARKER = "agf-synth.json"
METADATA_DIR = "fma_metadata"
AUDIO_DIR = "audio"
# Bump when the generative model changes, so an old corpus is not taken for a new one.
GENERATOR_VERSION = 3
# LAME algorithm quality: 7 encodes ~1.8x faster than the default at the same bitrate (encoding dominates render time).
MP3_SPEED = 7
SPLITS = ("training", "validation", "test")


@dataclass(frozen=True)
class RenderJob:
    """One clip to render and encode (picklable, for worker processes)."""

    path: Path
    spec: TrackSpec
    seconds: float
    sample_rate: int
    bitrate: int


def render_job(job: RenderJob) -> Path:
    """Render a clip and write it as MP3 (atomically); return its path."""
    audio = render_track(job.spec, job.seconds, job.sample_rate)
    write_audio(job.path, audio, job.sample_rate, job.bitrate, mp3_speed=MP3_SPEED)
    return job.path


@dataclass(frozen=True)
class CorpusSummary:
    """Counts that describe a generated corpus."""

    genres: int
    subgenres: int
    artists: int
    straddling_artists: int
    albums: int
    noisy_albums: int
    tracks: int
    noisy_tracks: int
    clip_seconds: float
    split_tracks: dict[str, int]

    def __str__(self) -> str:
        splits = ", ".join(f"{name} {self.split_tracks.get(name, 0)}" for name in SPLITS)
        return "\n".join([
            f"genres:  {self.genres} top-level, {self.subgenres} sub-genres",
            f"artists: {self.artists} ({self.straddling_artists} straddle two genres)",
            f"albums:  {self.albums} ({self.noisy_albums} with a wrong genre label)",
            f"tracks:  {self.tracks} clips of {self.clip_seconds:g} s ({self.noisy_tracks} wrongly labelled)",
            f"split:   {splits} tracks (artist-disjoint)",
        ])


def summarize(collection: Collection, config: SynthConfig) -> CorpusSummary:
    """The summary of a generated collection."""
    noisy_albums = {album.album_id for album in collection.albums if album.noisy}
    split_of_artist = {artist.artist_id: artist.split for artist in collection.artists}
    split_tracks = {name: 0 for name in SPLITS}
    for track in collection.tracks:
        split_tracks[split_of_artist[track.artist_id]] += 1
    return CorpusSummary(
        genres=sum(genre.parent == 0 for genre in collection.genres),
        subgenres=sum(genre.parent != 0 for genre in collection.genres),
        artists=len(collection.artists),
        straddling_artists=sum(artist.second_genre_id != 0 for artist in collection.artists),
        albums=len(collection.albums),
        noisy_albums=len(noisy_albums),
        tracks=len(collection.tracks),
        noisy_tracks=sum(track.album_id in noisy_albums for track in collection.tracks),
        clip_seconds=config.clip_seconds,
        split_tracks=split_tracks,
    )


def metadata_frames(collection: Collection, config: SynthConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flat tracks frame and the genres frame that fma_layout.write_fma_metadata takes.

    A track's genre labels are its album's: genre_top and genres point to the labelled sub-genre (a
    wrong one on a noisy album); true_genre is the artist's real top genre.
    """
    rows = []
    for track in collection.tracks:
        album, artist = collection.album(track.album_id), collection.artist(track.artist_id)
        label = collection.genre(album.label_id)
        rows.append({
            "track_id": track.track_id,
            "artist_id": artist.artist_id,
            "artist_name": artist.name,
            "album_id": album.album_id,
            "album_title": album.title,
            "title": track.title,
            "genre_top": collection.genre(label.top_level).title,
            "genres": [label.genre_id],
            "genres_all": [label.top_level, label.genre_id],
            "split": artist.split,
            "subset": "small",
            "duration": int(round(config.clip_seconds)),
            "true_genre": collection.genre(artist.genre_id).title,
            "label_noise": album.noisy,
        })
    tracks = pd.DataFrame(rows)
    counts = pd.Series([g for ids in tracks["genres_all"] for g in ids]).value_counts()
    genres = pd.DataFrame(
        {
            "#tracks": [int(counts.get(genre.genre_id, 0)) for genre in collection.genres],
            "parent": [genre.parent for genre in collection.genres],
            "title": [genre.title for genre in collection.genres],
            "top_level": [genre.top_level for genre in collection.genres],
        },
        index=pd.Index([genre.genre_id for genre in collection.genres], name="genre_id"),
    )
    return tracks, genres


def render_jobs(collection: Collection, config: SynthConfig, audio_dir: Path) -> list[RenderJob]:
    """A render job for every track, seeded from (seed, track id)."""
    jobs = []
    for track in collection.tracks:
        signature = collection.artist(track.artist_id).signature
        production = collection.album(track.album_id).production
        spec = track_spec(signature, production, config.clip_seconds, (config.seed, track.track_id))
        path = fma_audio_path(audio_dir, track.track_id)
        jobs.append(RenderJob(path, spec, config.clip_seconds, config.sample_rate, config.bitrate))
    return jobs


def _marker(config: SynthConfig, complete: bool, summary: CorpusSummary | None = None) -> dict[str, Any]:
    """The marker file's content."""
    content: dict[str, Any] = {"generator": GENERATOR_VERSION, "synth": config_to_dict(config), "complete": complete}
    if summary is not None:
        content["summary"] = asdict(summary)
    return content


def _claim(out_dir: Path, config: SynthConfig) -> bool:
    """Check that out_dir is free or holds this corpus; return whether it is already complete."""
    marker_path = out_dir / MARKER
    wanted = _marker(config, complete=False)
    if not marker_path.is_file():
        for name in (METADATA_DIR, AUDIO_DIR):
            if (out_dir / name).exists():
                raise SynthError(
                    f"{out_dir / name} exists but {marker_path} does not: the folder holds data that agf synth "
                    "did not write; render into an empty folder or delete it"
                )
        write_json_atomic(marker_path, wanted)
        return False
    found = read_json(marker_path)
    if found.get("generator") != wanted["generator"] or found.get("synth") != wanted["synth"]:
        differing = sorted(
            key for key in set(wanted["synth"]) | set(found.get("synth", {}))
            if wanted["synth"].get(key) != found.get("synth", {}).get(key)
        )
        what = f"settings differ: {', '.join(differing)}" if differing else "an older generator version"
        raise SynthError(
            f"{out_dir} holds a synthetic corpus made with other [synth] settings ({what}; see {marker_path}); "
            "render into another folder or delete this one"
        )
    return bool(found.get("complete"))


def synthesize_corpus(out_dir: Path, config: SynthConfig, workers: int = 2, progress: bool = True) -> Path:
    """Render the synthetic corpus into out_dir in FMA's layout and return out_dir.

    Idempotent: a complete corpus with the same settings returns at once; a partial one (a killed run)
    resumes, rendering only the clips that are missing.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"{out_dir}: is a file, not a folder; render the corpus into a new folder")
    collection = build_collection(config)
    if _claim(out_dir, config):
        return out_dir
    jobs = [job for job in render_jobs(collection, config, out_dir / AUDIO_DIR) if not job.path.is_file()]
    for _ in map_unordered(render_job, jobs, workers, desc="synth", progress=progress, unit="clip"):
        pass
    tracks, genres = metadata_frames(collection, config)
    write_fma_metadata(out_dir / METADATA_DIR, tracks, genres)
    write_json_atomic(out_dir / MARKER, _marker(config, complete=True, summary=summarize(collection, config)))
    return out_dir


def corpus_is_complete(out_dir: Path, config: SynthConfig) -> bool:
    """Whether out_dir holds the complete corpus of these settings (read only: nothing is claimed or rendered)."""
    marker_path = Path(out_dir) / MARKER
    if not marker_path.is_file():
        return False
    found = read_json(marker_path)
    wanted = _marker(config, complete=True)
    return bool(found.get("complete")) and (found.get("generator"), found.get("synth")) == (
        wanted["generator"], wanted["synth"]
    )


def corpus_summary(out_dir: Path) -> CorpusSummary:
    """The summary recorded in a complete corpus's marker file."""
    marker_path = Path(out_dir) / MARKER
    if not marker_path.is_file():
        raise SynthError(f"{marker_path}: not found; {out_dir} is not a corpus made by agf synth")
    found = read_json(marker_path)
    if not found.get("complete"):
        raise SynthError(f"{out_dir}: the corpus is incomplete (a run was stopped); run agf synth on it again to finish")
    return CorpusSummary(**found["summary"])
