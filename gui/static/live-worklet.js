// The live page's capture: mono s16le at the stream's rate, in 1000-frame packets.
//
// Runs on the audio rendering thread, in a context at the device's rate. Each output
// sample is a windowed sinc over the input around its exact position: a low-pass below
// the lower rate's Nyquist, then band-limited interpolation. Cheaper ways cost tiny.en
// words (bench/RESULTS.md): averaging the input samples each output covers (a box filter
// at fractional steps) jitters and aliases, and a context at the stream's rate, resampled
// by Chromium, did no better. Full packets go to the page as transferable buffers; so
// does the peak level, 20 times a second.

const REACH = 8; // the kernel's half-width, in samples at the lower of the two rates
const PASS = 0.9; // cutoff, as a fraction of the lower rate's Nyquist

class PcmPacker extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frames } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frames = frames;
    this.packet = new Int16Array(frames);
    this.fill = 0;
    const lower = Math.min(1, 1 / this.step); // the lower Nyquist, in input Nyquists
    this.cutoff = 0.5 * PASS * lower; // cycles per input sample
    this.half = Math.ceil(REACH / lower); // input samples either side of an output
    this.input = new Float32Array(4096);
    this.held = 0; // input samples in `input`
    this.first = 0; // the input sample number of input[0]
    this.at = 0; // the input position of the next output sample
    this.levelEvery = Math.round(sampleRate / 20);
    this.levelSeen = 0;
    this.peak = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.flush();
    };
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.packet[this.fill++] = Math.round(clamped * 32767);
    if (this.fill === this.frames) {
      this.port.postMessage({ pcm: this.packet.buffer }, [this.packet.buffer]);
      this.packet = new Int16Array(this.frames);
      this.fill = 0;
    }
  }

  // The output sample at input position `at`: weights normalised to sum 1, so a steady
  // level passes unchanged whatever the phase.
  interpolate(at) {
    const from = Math.max(this.first, Math.floor(at) - this.half + 1);
    const to = Math.min(this.first + this.held - 1, Math.floor(at) + this.half);
    let sum = 0;
    let weights = 0;
    for (let n = from; n <= to; n++) {
      const d = at - n;
      const x = 2 * this.cutoff * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const hann = 0.5 + 0.5 * Math.cos((Math.PI * d) / this.half);
      const weight = sinc * hann;
      sum += weight * this.input[n - this.first];
      weights += weight;
    }
    return weights === 0 ? 0 : sum / weights;
  }

  hold(x) {
    if (this.held === this.input.length) {
      const grown = new Float32Array(2 * this.input.length);
      grown.set(this.input);
      this.input = grown;
    }
    this.input[this.held++] = x;
  }

  // Emits every output sample whose kernel the input now covers (`ending`: all of them,
  // the missing input taken as silence), then forgets the input no later one needs.
  drain(ending) {
    if (this.step === 1) {
      for (let i = 0; i < this.held; i++) this.emit(this.input[i]);
      this.first += this.held;
      this.at = this.first;
      this.held = 0;
      return;
    }
    const end = this.first + this.held;
    while (this.at + this.half <= end || (ending && this.at < end)) {
      this.emit(this.interpolate(this.at));
      this.at += this.step;
    }
    const keep = Math.max(this.first, Math.floor(this.at) - this.half + 1);
    this.input.copyWithin(0, keep - this.first, this.held);
    this.held -= keep - this.first;
    this.first = keep;
  }

  flush() {
    this.drain(true);
    if (this.fill > 0) {
      const rest = this.packet.slice(0, this.fill);
      this.port.postMessage({ pcm: rest.buffer }, [rest.buffer]);
      this.fill = 0;
    }
    this.port.postMessage({ flushed: true });
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (const channel of channels) x += channel[i];
      x /= channels.length;
      this.hold(x);
      this.peak = Math.max(this.peak, Math.abs(x));
      if (++this.levelSeen >= this.levelEvery) {
        this.port.postMessage({ level: this.peak });
        this.levelSeen = 0;
        this.peak = 0;
      }
    }
    this.drain(false);
    return true;
  }
}

registerProcessor("whisperfarm-pcm-packer", PcmPacker);
