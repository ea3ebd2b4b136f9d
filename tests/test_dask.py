"""Scale-out on a dask cluster (run.scheduler): the same store and the same nets as the local path, and a store
that survives a worker killed mid-run. One 2-worker LocalCluster serves the module, reached by its address.

Workers import this module to run kill_once, so its top level imports nothing heavy (agf.pipeline loads torch).
"""

from __future__ import annotations

import http.server
import os
import socketserver
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from audio_cases import make_random_bytes, music_like
from safetensors.numpy import load_file
from tiny_config import TINY_CORPUS, TINY_TRAINING

from agf.audio import write_audio
from agf.config import FeatureConfig, config_from_dict
from agf.errors import ConfigError
from agf.parallel import check_scheduler, close_clients, worker_env
from agf.prepare import TrackJob, prepare_features, prepare_track
from agf.store import LOCATION_COLUMNS, FeatureStore
from agf.workdir import WorkDir

distributed = pytest.importorskip("distributed")

SR = 22050
VICTIM = "clip2"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a LocalCluster of 2 single-thread worker processes."""
    with worker_env():
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        close_clients()
        cluster.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Six short clips and one undecodable file."""
    root = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(6):
        write_audio(root / f"clip{i}.wav", music_like(2.0, SR, seed=i), SR)
        rows.append((f"clip{i}", str(root / f"clip{i}.wav")))
    rows.append(("broken", str(make_random_bytes(root / "broken.mp3"))))
    return pd.DataFrame(rows, columns=["track_id", "audio_path"])


def _arrays(store: FeatureStore, kind: str) -> dict[str, np.ndarray]:
    read = store.mel if kind == "mel" else store.mfcc
    return {t: np.asarray(read(t)) for t in store.ok_ids()}


def test_prepare_on_a_cluster_gives_the_local_store(clips: pd.DataFrame, scheduler: str, tmp_path: Path) -> None:
    local = FeatureStore.open(tmp_path / "local", FeatureConfig())
    prepare_features(clips, local, workers=1, progress=False)
    cluster = FeatureStore.open(tmp_path / "cluster", FeatureConfig())
    summary = prepare_features(clips, cluster, workers=2, progress=False, scheduler=scheduler)
    assert summary.done == len(clips) and summary.status == {"ok": 6, "failed": 1}
    pd.testing.assert_frame_equal(cluster.index().drop(columns=list(LOCATION_COLUMNS)),
                                  local.index().drop(columns=list(LOCATION_COLUMNS)))
    for kind in ("mel", "mfcc"):
        expected, found = _arrays(local, kind), _arrays(cluster, kind)
        assert found.keys() == expected.keys()
        for track_id, array in expected.items():
            assert np.array_equal(found[track_id], array), (kind, track_id)


def kill_once(job: TrackJob) -> dict:
    """prepare_track, except that the VICTIM's first attempt leaves a half-written record in its pack and a cut
    journal line, and kills its worker."""
    marker = Path(job.store_root).parent / f"killed-{job.track_id}"
    if job.track_id == VICTIM and not marker.exists():
        marker.touch()
        pack = Path(job.store_root) / "packs" / "killed-worker"
        pack.parent.mkdir(parents=True, exist_ok=True)
        pack.with_suffix(".bin").write_bytes(b"half a log-mel")
        pack.with_suffix(".jsonl").write_text(f'{{"track_id": "{job.track_id}", "status": "ok", "mel_off')
        os._exit(1)
    return prepare_track(job)


def test_a_worker_killed_mid_prepare_leaves_a_complete_store(
    clips: pd.DataFrame, scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agf.prepare.prepare_track", kill_once)
    store = FeatureStore.open(tmp_path, FeatureConfig())
    summary = prepare_features(clips, store, workers=2, progress=False, scheduler=scheduler)
    assert (tmp_path / "features" / f"killed-{VICTIM}").exists()  # the victim's worker was killed once
    assert summary.done == len(clips)
    index = store.index().set_index("track_id")
    assert sorted(index.index) == sorted(clips["track_id"])
    for track_id in store.ok_ids():
        assert store.mel(track_id).shape[0] == index.loc[track_id, "frames"]
        assert store.mfcc(track_id).shape[0] == index.loc[track_id, "frames"]
    assert not list(store.root.rglob(".*.tmp"))
    again = prepare_features(clips, store, workers=2, progress=False, scheduler=scheduler)
    assert again.done == 0 and again.skipped == len(clips)


TINY_GRID = TINY_CORPUS + """
[grid]
tasks = ["g"]
archs = ["stn"]
subsets = ["g"]
seeds = [0, 1]
""" + TINY_TRAINING


@pytest.mark.slow
def test_grid_nets_trained_on_a_cluster_equal_the_local_ones(scheduler: str, tmp_path: Path) -> None:
    from agf.pipeline import (
        Factors,
        Prepared,
        collect_results,
        net_inputs,
        run_grid,
        stage_net,
        stage_prepare,
        stage_tracks,
    )
    from agf.training import net_specs

    config = config_from_dict(tomllib.loads(TINY_GRID))
    config = replace(config, run=replace(config.run, workers=1))  # the local stages in this process
    workdir = WorkDir(tmp_path / "local")
    loaded = stage_tracks(config, workdir, progress=False)
    store, _ = stage_prepare(config, workdir, loaded.tracks, progress=False)
    local = Prepared(workdir, store.usable(loaded.tracks), store)
    inputs = net_inputs(config, local, Factors(None, None))
    [spec] = net_specs("stn", inputs.task_outputs, store.config.n_mels)
    # One torch thread, as the cluster's workers: a reduction over 2 threads sums in another order (an earlier
    # in-process command of the same pytest worker may have left 2).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local_nets = [stage_net(config, inputs, spec, seed, False, lambda _: None) for seed in (0, 1)]
    finally:
        torch.set_num_threads(threads)
    # The cluster's grid reads the same store and writes into its own work directory.
    on_cluster = replace(config, run=replace(config.run, scheduler=scheduler))
    lines: list[str] = []
    grid = run_grid(on_cluster, replace(local, workdir=WorkDir(tmp_path / "cluster")), False, lines.append)
    assert "nets: training 2 of 2 on the dask cluster" in lines[0]
    cluster_nets = sorted((tmp_path / "cluster" / "nets").iterdir())
    assert [p.name for p in cluster_nets] == sorted(p.name for p in local_nets)
    for ours, theirs in zip(cluster_nets, sorted(local_nets)):
        found, expected = load_file(ours / "model.safetensors"), load_file(theirs / "model.safetensors")
        assert found.keys() == expected.keys()
        for name, weights in expected.items():
            assert np.array_equal(found[name], weights), (ours.name, name)  # bitwise
    results = collect_results(grid)[0]
    assert set(results["seed"]) == {0, 1} and results["value"].notna().all()


def test_an_unreachable_scheduler_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agf.parallel.CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ConfigError, match="tcp://127.0.0.1:9"):
        check_scheduler("tcp://127.0.0.1:9", 2)


def test_without_dask_the_scheduler_asks_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'dask\[distributed\]"):
        check_scheduler("local", 2)
    check_scheduler("", 2)  # no scheduler: nothing to check


def test_the_scheduler_option_sets_run_scheduler() -> None:
    from agf.cli import _base_config, build_parser

    args = build_parser().parse_args(["train", "-c", "demo", "--scheduler", "tcp://head:8786"])
    assert _base_config(args).run.scheduler == "tcp://head:8786"
    assert _base_config(build_parser().parse_args(["train", "-c", "demo"])).run.scheduler == ""


class _Banner(socketserver.BaseRequestHandler):
    """A TCP service that greets first, as SSH does (dask read its first 8 bytes as a 2.8 EiB message length),
    then keeps the connection open."""

    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        self.request.recv(1 << 16)


@pytest.fixture(params=["http", "banner"])
def non_dask_address(request: pytest.FixtureRequest) -> Iterator[str]:
    """The address of a real non-dask service on localhost: an HTTP server, or a TCP server that greets first."""
    handler = http.server.SimpleHTTPRequestHandler if request.param == "http" else _Banner
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _within(seconds: float, call: Callable[[], None]) -> BaseException | None:
    """What call() raised, or None; fails the test when it has not returned after `seconds`."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as exc:  # whatever it is, the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert raised, f"still waiting after {seconds} s"
    return raised[0]


def test_a_service_that_is_not_dask_is_one_clear_error_within_the_timeout(
    non_dask_address: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("agf.parallel.CONNECT_TIMEOUT_S", 1)
    started = time.monotonic()
    error = _within(10, lambda: check_scheduler(non_dask_address, 2))
    assert time.monotonic() - started < 3
    assert isinstance(error, ConfigError), repr(error)
    message = str(error)
    assert non_dask_address in message and "no dask scheduler answered within 1 s" in message
    assert "fix the address" in message and "\n" not in message


def test_check_lists_the_scheduler_beside_every_other_problem(
    non_dask_address: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agf.pipeline import check_run

    monkeypatch.setattr("agf.parallel.CONNECT_TIMEOUT_S", 1)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    config = config_from_dict({"dataset": {"kind": "manifest", "manifest": str(tmp_path / "none.csv")},
                               "run": {"scheduler": non_dask_address, "workdir": str(a_file)}})
    problems, _ = check_run(config)
    assert len(problems) == 3, problems
    assert non_dask_address in problems[0] and "is a file" in problems[1] and "none.csv" in problems[2]
