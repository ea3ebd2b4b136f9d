"""`agf prepare`: decode every track once and store its log-mel, MFCCs and technical facts.

Resumable and kill-safe: a track counts as finished only when its entry (its journal line, written after its
arrays: agf.store) exists and still describes the same audio file, so re-running skips finished tracks and
redoes anything a kill interrupted. Decoding failures are recorded per track, never fatal.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from agf.audio import AudioDecodeError, Segment, decode_segment, level_db, rms_db, silence_reason, truncation
from agf.config import FeatureConfig
from agf.features import extractor_for
from agf.parallel import available_cores, map_unordered
from agf.store import FeatureStore

# At most this many usable files with decoder messages are listed in the summary (all are in the index).
MAX_LISTED_NOTES = 20


@dataclass(frozen=True)
class TrackJob:
    """One track to prepare: everything a worker process needs."""

    track_id: str
    audio_path: str
    store_root: str
    config: FeatureConfig
    known_bad: bool = False
    # Seconds the metadata says the file lasts (NaN: unknown).
    declared_duration: float = float("nan")


@dataclass
class PrepareSummary:
    """What a prepare run did."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    # 'path: reason' of usable files whose decoder reported problems (damaged frames skipped, ...).
    noted: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A short human-readable report."""
        lines = [f"tracks: {self.total}  newly prepared: {self.done}  already done (skipped): {self.skipped}"]
        if self.status:
            lines.append("status of newly prepared tracks: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.status.items())))
        if self.reasons:
            lines.append("not usable, by reason:")
            lines += [f"  {count:6d}  {reason}" for reason, count in self.reasons.most_common(20)]
        if self.noted:
            lines.append(f"usable, with decoder messages: {len(self.noted)}")
            lines += [f"  {note}" for note in self.noted[:MAX_LISTED_NOTES]]
        return "\n".join(lines)


def _file_facts(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of an audio file, or (-1, -1) when it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


def prepare_track(job: TrackJob) -> dict:
    """Decode one track, compute and store its features, write its entry; return the entry."""
    store = FeatureStore(job.store_root, job.config)
    size, mtime = _file_facts(job.audio_path)
    entry: dict = {
        "track_id": job.track_id,
        "status": "ok",
        "reason": "",
        "audio_path": job.audio_path,
        "file_size": size,
        "file_mtime_ns": mtime,
        "sample_rate": 0,
        "channels": 0,
        "duration": 0.0,
        "frames": 0,
        "peak_db": float("nan"),
        "rms_db": float("nan"),
        "decoder": "",
    }
    if job.known_bad:
        entry.update(status="known_bad", reason="listed in FMA's known bad files")
        store.write_track(entry)
        return entry
    segment = Segment.of(job.config)
    try:
        samples, info = decode_segment(job.audio_path, job.config.sample_rate, segment)
    except AudioDecodeError as exc:
        entry.update(status="failed", reason=exc.reason)
        store.write_track(entry)
        return entry
    features = extractor_for(job.config)(samples)
    frames = int(features.mel.shape[0])
    entry.update(
        sample_rate=info.sample_rate,
        channels=info.channels,
        duration=info.duration,
        frames=frames,
        peak_db=level_db(float(np.max(np.abs(samples))) if samples.size else 0.0),
        rms_db=rms_db(samples),
        decoder=info.decoder,
    )
    truncated = truncation(info, job.declared_duration)
    silent = silence_reason(entry["rms_db"], job.config.silence_rms_db)
    if truncated:
        entry.update(status="truncated", reason=truncated)
    elif frames < job.config.min_frames:
        kept = samples.size / job.config.sample_rate
        entry.update(status="too_short", reason=f"{kept:.2f} s is shorter than one patch" + (
            "" if segment == Segment() else f" (the segment kept of {info.duration:.2f} s decoded)"))
    elif silent:
        entry.update(status="silent", reason=silent)
    if info.notes:
        entry["reason"] = "; ".join([*filter(None, [entry["reason"]]), f"the decoder said: {' | '.join(info.notes)}"])
    store.write_track(entry, features.mel, features.mfcc)
    return entry


def is_finished(entry: dict | None, audio_path: str, retry_failed: bool) -> bool:
    """Whether a track's stored entry (FeatureStore.read_entry; None: never finished) is complete and still
    matches its audio file."""
    if entry is None:
        return False
    if retry_failed and entry["status"] == "failed":
        return False
    # The file is identified by its size and modification time, not by how its path is spelled: a work
    # directory (and the synthetic corpus in it) reached by another path or moved elsewhere is not redone.
    if (entry["file_size"], entry["file_mtime_ns"]) != _file_facts(audio_path):
        return False
    return entry["status"] not in ("ok", "too_short", "silent") or entry["mel_offset"] >= 0


def prepare_features(
    tracks: pd.DataFrame,
    store: FeatureStore,
    workers: int = 1,
    known_bad: frozenset[str] = frozenset(),
    retry_failed: bool = False,
    progress: bool = True,
    scheduler: str = "",
) -> PrepareSummary:
    """Build the store for every track of a track table (on `workers` local processes, or the dask cluster of
    `scheduler`: agf.parallel); skip finished tracks; index at the end. Temporaries a killed worker left are
    removed before and after."""
    store.remove_temporaries()
    summary = PrepareSummary(total=len(tracks))
    stored = store.entries().set_index("track_id")
    finished = stored[["status", "file_size", "file_mtime_ns", "mel_offset"]].to_dict("index")
    jobs = []
    declared = tracks["declared_duration"] if "declared_duration" in tracks.columns else [float("nan")] * len(tracks)
    for track_id, audio_path, seconds in zip(tracks["track_id"], tracks["audio_path"], declared):
        if is_finished(finished.get(track_id), audio_path, retry_failed):
            summary.skipped += 1
            continue
        # A cluster's workers may run elsewhere: they get paths that do not depend on this process's directory.
        path = os.path.abspath(audio_path) if scheduler else audio_path
        jobs.append(TrackJob(track_id, path, str(store.root.absolute()), store.config, track_id in known_bad,
                             float(seconds)))
    tasks = map_unordered(prepare_track, jobs, workers, desc="prepare", progress=progress, unit="track",
                          scheduler=scheduler)
    for entry in tasks:
        summary.done += 1
        summary.status[entry["status"]] += 1
        if entry["status"] != "ok":
            summary.reasons[f"{entry['status']}: {entry['reason']}"] += 1
        elif entry["reason"]:
            summary.noted.append(f"{entry['audio_path']}: {entry['reason']}")
    store.remove_temporaries()
    store.write_index()
    return summary


def default_workers() -> int:
    """All cores but none beyond them."""
    return available_cores()

