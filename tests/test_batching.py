"""Cross-stream batching: the gate's rules, and stream results unchanged by batching.

The gate tests use a recording fake batch function (no model). The engine tests decode
the same clips one at a time with `--max-batch 1` and all at once with batching on: the
words must be the same, and the batched run must really have shared forward passes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.exposition import metric_sum
from tests.speech import SENTENCES, fixture_clips, synthesize
from tests.worker_support import final_body, interleave_streams, read_wav, worker_rig
from whisperfarm.errors import EngineError
from whisperfarm.wire import Command
from workers import engines
from workers.batching import BatchGate
from workers.engines import DecodeRequest, Engine
from workers.settings import WorkerSettings

JOIN_S = 30.0
"""Generous bound for threads to finish: a hang fails the test instead of blocking it."""


class Recorder:
    """A batch function that records every batch and can be held at a barrier."""

    def __init__(self) -> None:
        self.batches: list[tuple[Hashable, list[int]]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, key: Hashable, values: Sequence[int]) -> list[int]:
        self.release.wait(JOIN_S)
        self.batches.append((key, list(values)))
        if any(v < 0 for v in values):
            raise EngineError("negative input")
        return [v * 10 for v in values]


def run_threads(gate: BatchGate[int, int], calls: Sequence[tuple[Hashable, int]]) -> list[int]:
    """Each call in its own thread, all decoding before any reaches the gate."""
    all_decoding = threading.Barrier(len(calls))

    def one(call: tuple[Hashable, int]) -> int:
        with gate.decoding():
            all_decoding.wait(JOIN_S)
            return gate.call(*call)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls, timeout=JOIN_S))


def test_threads_at_the_gate_share_one_batch_without_waiting_out_the_timer() -> None:
    recorder = Recorder()
    gate = BatchGate(recorder, max_batch=8, wait_s=3600)  # only "everyone is here" can fire
    assert run_threads(gate, [("k", i) for i in range(5)]) == [0, 10, 20, 30, 40]
    assert [sorted(v) for _, v in recorder.batches] == [[0, 1, 2, 3, 4]]


def test_max_batch_and_keys_bound_a_batch() -> None:
    recorder = Recorder()
    gate = BatchGate(recorder, max_batch=2, wait_s=3600)
    calls = [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5)]
    assert run_threads(gate, calls) == [10, 20, 30, 40, 50]
    assert all(len(values) <= 2 for _, values in recorder.batches)
    for key, values in recorder.batches:
        assert {k for k, v in calls if v in values} == {key}  # keys never mix
    assert sorted(v for _, values in recorder.batches for v in values) == [1, 2, 3, 4, 5]


def test_a_lone_caller_is_not_kept_waiting() -> None:
    gate = BatchGate(Recorder(), max_batch=8, wait_s=3600)
    assert gate.call("k", 7) == 70  # outside `decoding()`: nobody to wait for


def test_a_straggler_is_waited_for_only_wait_s() -> None:
    """Two decoding threads, one never arrives: the other runs alone after wait_s."""
    recorder = Recorder()
    gate = BatchGate(recorder, max_batch=8, wait_s=0.05)
    busy_elsewhere = threading.Event()

    def idle() -> None:
        with gate.decoding():
            busy_elsewhere.wait(JOIN_S)

    other = threading.Thread(target=idle)
    other.start()
    try:
        with gate.decoding():
            assert gate.call("k", 1) == 10
    finally:
        busy_elsewhere.set()
        other.join(JOIN_S)
    assert recorder.batches == [("k", [1])]


def test_every_batch_runs_on_the_same_thread() -> None:
    """Whichever thread leads, forward passes run on one thread (native per-thread
    state such as OpenMP teams then exists once, not once per stream)."""
    runners: set[int] = set()

    def run(key: Hashable, values: Sequence[int]) -> list[int]:
        runners.add(threading.get_ident())
        return [v * 10 for v in values]

    gate = BatchGate(run, max_batch=1, wait_s=0)
    assert run_threads(gate, [("k", v) for v in range(4)]) == [0, 10, 20, 30]
    assert gate.call("k", 5) == 50
    assert len(runners) == 1 and threading.get_ident() not in runners


def test_parallel_batches_run_at_once_each_on_its_own_forward_thread() -> None:
    """Two batches of two: both runs must be inside `run` together (a barrier of two
    that one batch at a time could never pass), on two forward threads."""
    both_running = threading.Barrier(2)
    runners: set[int] = set()

    def run(key: Hashable, values: Sequence[int]) -> list[int]:
        runners.add(threading.get_ident())
        both_running.wait(JOIN_S)
        return [v * 10 for v in values]

    gate = BatchGate(run, max_batch=2, wait_s=3600, parallel=2)
    assert run_threads(gate, [("k", v) for v in range(4)]) == [0, 10, 20, 30]
    assert len(runners) == 2


def test_threads_in_a_running_batch_are_not_waited_for() -> None:
    """A runs alone (its partners were busy when the timer ran out) and is held; B and C
    then arrive and, with a second pass free, start their batch at once: A's thread is
    decoding but cannot arrive, so "everyone is here" counts without it."""
    recorder_batches: list[list[int]] = []
    go_on = threading.Event()
    second_done = threading.Event()
    gate: BatchGate[int, int]

    def run(key: Hashable, values: Sequence[int]) -> list[int]:
        recorder_batches.append(list(values))
        if values == [0]:
            gate.wait_s = 3600  # from now on only "everyone is here" can start a batch
            go_on.set()
            assert second_done.wait(JOIN_S), "the second batch did not run beside the first"
        else:
            second_done.set()
        return [v * 10 for v in values]

    gate = BatchGate(run, max_batch=8, wait_s=0.05, parallel=2)
    all_decoding = threading.Barrier(3)

    def one(value: int) -> int:
        with gate.decoding():
            all_decoding.wait(JOIN_S)
            if value:
                go_on.wait(JOIN_S)  # busy elsewhere until A's batch runs
            return gate.call("k", value)

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(one, [0, 1, 2], timeout=JOIN_S)) == [0, 10, 20]
    assert [sorted(b) for b in recorder_batches] == [[0], [1, 2]]


def test_an_error_reaches_every_thread_of_its_batch() -> None:
    gate = BatchGate(Recorder(), max_batch=8, wait_s=3600)

    all_decoding = threading.Barrier(3)

    def one(value: int) -> str:
        with gate.decoding():
            all_decoding.wait(JOIN_S)
            try:
                return str(gate.call("k", value))
            except EngineError as exc:
                return exc.detail

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(one, [1, -1, 2], timeout=JOIN_S)) == ["negative input"] * 3
    assert gate.call("k", 3) == 30  # the gate is still usable


class FakeEncoder:
    """A CTranslate2 `Whisper` stand-in whose encoder records each pass's window count."""

    def __init__(self) -> None:
        self.passes: list[int] = []

    def encode(self, features: object, to_cpu: bool = False) -> np.ndarray:
        array = np.array(features)
        self.passes.append(len(array))
        return array * 2


def test_faster_whisper_encodes_a_batch_window_by_window() -> None:
    """The gate hands over 3 windows; the encoder sees them one at a time (its peak memory
    is one window's), and each thread still gets its own window's output."""
    from workers.engines.ct2_gate import GatedCt2Model

    fake = FakeEncoder()
    gated = GatedCt2Model(fake, max_batch=8, wait_s=3600)  # type: ignore[arg-type]
    windows = [np.full((1, 2, 3), i, dtype=np.float32) for i in range(3)]
    outputs = gated._run(("encode",), windows)
    assert fake.passes == [1, 1, 1]
    for window, output in zip(windows, outputs, strict=True):
        np.testing.assert_array_equal(output, window * 2)


# ---- engines: batching must not change the words ------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    from faster_whisper.audio import decode_audio

    tmp = tmp_path_factory.mktemp("speech")
    spoken = [synthesize(text, tmp / f"{i}.wav") for i, text in enumerate(SENTENCES[:2])]
    paths = [path for path, _ in fixture_clips()] + spoken
    return [decode_audio(str(p), sampling_rate=16_000) for p in paths]


def record_batch_sizes(engine: Engine) -> list[int]:
    """The size of every forward pass the engine's gate runs from now on."""
    gate = engine.gated.gate if hasattr(engine, "gated") else engine.gate  # type: ignore[attr-defined]
    sizes: list[int] = []
    run: Callable[[Hashable, Sequence[object]], Sequence[object]] = gate._run

    def recording(key: Hashable, values: Sequence[object]) -> Sequence[object]:
        sizes.append(len(values))
        return run(key, values)

    gate._run = recording
    return sizes


@pytest.mark.model
@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("name", ["faster-whisper", "openai-whisper"])
def test_batched_streams_get_the_same_words(
    name: str, parallel: int, clips: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Batches of up to 8 windows (a budget that allows them), one or two at once."""
    cache = tmp_path_factory.mktemp("models")
    settings = WorkerSettings(
        engine=name,
        model="tiny.en",
        model_cache_dir=cache,
        max_batch=8,
        batch_memory_mb=1000,
        parallel_batches=parallel,
    )
    engine = engines.load(settings)
    requests = [DecodeRequest(audio) for audio in clips]
    sizes = record_batch_sizes(engine)
    alone = [engine.transcribe([r])[0] for r in requests]
    assert set(sizes) == {1}
    sizes.clear()
    together = engine.transcribe(requests)
    assert max(sizes) > 1, "nothing was batched"
    for one, batched in zip(alone, together, strict=True):
        assert [s.text for s in batched.segments] == [s.text for s in one.segments]


@pytest.mark.model
def test_worker_batches_streams_and_keeps_their_words(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Streams uploaded side by side to one worker: their windows share forward passes,
    and each transcript is the one the same worker gives with batching off."""
    streams = {p.stem: read_wav(p) for p, _ in fixture_clips()}
    texts: dict[str, dict[str, str]] = {}
    for max_batch in ("1", "8"):
        tmp = tmp_path_factory.mktemp(f"batch-{max_batch}")
        args = ["--engine", "faster-whisper", "--model", "tiny.en", "--slots", "4",
                "--batch-memory-mb", "200"]  # fmt: skip
        for running in worker_rig(tmp, *args, "--max-batch", max_batch):
            interleave_streams(running.broker, streams)
            finals = {
                job: final_body(running.broker.expect(Command.FINAL, job, timeout=180)[1])
                for job in streams
            }
            texts[max_batch] = {job: f["text"] for job, f in finals.items()}
            scrape = running.metrics()
            count = metric_sum(scrape, "whisperfarm_worker_decode_batch_size_count")
            total = metric_sum(scrape, "whisperfarm_worker_decode_batch_size_sum")
            assert (total > count) == (max_batch == "8"), (total, count)
    assert texts["8"] == texts["1"]


def test_null_engine_is_never_the_default(tmp_path: Path) -> None:
    assert WorkerSettings().engine == "faster-whisper"
