"""What `agf demo` prints after the run: where the report is, and the selected model's predictions for a few test
files from the bundle it exports."""

from __future__ import annotations

from pathlib import Path

from agf.config import Config
from agf.datasets.table import TEST, split_mask
from agf.pipeline.reporting import stage_export
from agf.pipeline.run import PipelineRun
from agf.report.results import selection_split

def demo_summary(run: PipelineRun) -> str:
    """What `agf demo` prints after run_pipeline's last lines (its headline: the best transfer setup beside genre-only
    training, chosen on validation, with the verdict on the spread over seeds): where the report is."""
    return f"report (the headline above is its first section): {run.report['html']}"


DEMO_PREDICTIONS = 6


def demo_predictions(config: Config, run: PipelineRun) -> str:
    """Export the selected model to WORKDIR/model and classify a few test files with it, as `agf predict` would."""
    from agf.predict import GenreClassifier

    prepared = run.prepared
    path, what = stage_export(config, prepared, run.grid, run.results, run.selection, prepared.workdir.model)
    split = TEST if split_mask(prepared.tracks, TEST).any() else selection_split(run.results)
    tracks = prepared.tracks[split_mask(prepared.tracks, split)].head(DEMO_PREDICTIONS)
    classifier = GenreClassifier.load(path, device=config.run.device)
    lines = [f"exported {what} to {path}; its predictions for {len(tracks)} {split} files:"]
    for (_, track), prediction in zip(tracks.iterrows(), classifier.predict_many(tracks["audio_path"])):
        top = ", ".join(f"{g} {p:.2f}" for g, p in prediction.top(2)) if prediction.ok else prediction.error
        truth = f" (true {track['true_genre']})" if track.get("true_genre", track["genre"]) != track["genre"] else ""
        lines.append(f"  {Path(prediction.source).name}  given {track['genre']}{truth}: {top}")
    lines.append(f"classify your own files: agf predict {path} FILES_OR_DIRS (see docs/predict.md)")
    return "\n".join(lines)

