"""The `/live` page's capture worklet, run in real headless Chromium on pure tones.

The page's context runs at the microphone's rate and the worklet resamples to the stream's.
Tones say what a resampler did: a tone in the speech band must come out at its frequency
and level with nothing beside it, and a tone above the stream's Nyquist must come out as
nothing rather than as a false tone inside the band (aliasing, which costs tiny.en words:
`bench/RESULTS.md`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gui_conftest import CHROMIUM_ARGS, require_chromium

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ORIGIN = "http://localhost:9"
"""Served by the test's route, not by a server: localhost is a secure context, which an
AudioWorklet needs (the worklet itself is loaded from a blob: worklet requests bypass
Playwright's routes)."""
WORKLET = Path(__file__).parent.parent / "gui" / "static" / "live-worklet.js"
SECONDS = 1.0
TARGET = 16_000

CAPTURE = """async ([worklet, deviceRate, targetRate, frequency, seconds]) => {
  const context = new AudioContext({ sampleRate: deviceRate });
  const script = new Blob([worklet], { type: "text/javascript" });
  await context.audioWorklet.addModule(URL.createObjectURL(script));
  const node = new AudioWorkletNode(context, "whisperfarm-pcm-packer", {
    numberOfInputs: 1, numberOfOutputs: 0,
    processorOptions: { targetRate, frames: 1000 },
  });
  const packets = [];
  const flushed = new Promise((resolve) => {
    node.port.onmessage = (event) => {
      if (event.data.pcm) packets.push(...new Int16Array(event.data.pcm));
      else if (event.data.flushed) resolve();
    };
  });
  const tone = new OscillatorNode(context, { frequency });
  const gain = new GainNode(context, { gain: 0.5 });
  tone.connect(gain).connect(node);
  await context.resume();
  tone.start();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  node.port.postMessage("flush");
  await flushed;
  await context.close();
  return packets;
}"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """A page at a localhost origin; it may log no JS error."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
            headless=True,
        )
        page = chromium.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route(f"{ORIGIN}/", lambda route: route.fulfill(body="<html></html>",
                                                             content_type="text/html"))  # fmt: skip
        page.goto(f"{ORIGIN}/")
        yield page
        chromium.close()
    assert errors == []


def spectrum(page: Any, device_rate: int, frequency: float) -> tuple[np.ndarray, np.ndarray]:
    """What the worklet made of a tone at `frequency` played at `device_rate`: frequencies
    and amplitudes (a full-scale sine's amplitude is 1) of its steady middle."""
    packed = page.evaluate(CAPTURE, [WORKLET.read_text(), device_rate, TARGET, frequency, SECONDS])
    samples = np.asarray(packed, dtype=np.float64) / 32767
    assert len(samples) >= 0.8 * SECONDS * TARGET, "the worklet sent too little audio"
    middle = samples[len(samples) // 4 : len(samples) // 4 + TARGET // 2]
    window = np.hanning(len(middle))
    amplitudes = np.abs(np.fft.rfft(middle * window)) * 2 / window.sum()
    return np.fft.rfftfreq(len(middle), 1 / TARGET), amplitudes


def level_near(freqs: np.ndarray, amplitudes: np.ndarray, frequency: float) -> float:
    return float(amplitudes[np.abs(freqs - frequency) <= 50].max())


@pytest.mark.parametrize("device_rate", [44_100, 48_000, 8_000])
def test_a_tone_in_the_speech_band_keeps_its_frequency_and_level(
    page: Any, device_rate: int
) -> None:
    freqs, amplitudes = spectrum(page, device_rate, 1_000)
    assert level_near(freqs, amplitudes, 1_000) == pytest.approx(0.5, rel=0.05)
    elsewhere = np.abs(freqs - 1_000) > 200
    assert amplitudes[elsewhere].max() < 0.5 / 100, "more than the tone came out (-40 dB)"


@pytest.mark.parametrize(("device_rate", "frequency"), [(44_100, 12_100), (48_000, 11_000)])
def test_a_tone_above_the_stream_s_nyquist_does_not_fold_into_the_band(
    page: Any, device_rate: int, frequency: float
) -> None:
    freqs, amplitudes = spectrum(page, device_rate, frequency)
    folded = TARGET - frequency
    assert level_near(freqs, amplitudes, folded) < 0.5 / 100, (
        f"{frequency} Hz came out at {folded} Hz"
    )
