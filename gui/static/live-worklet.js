// The live page's capture: mono s16le at the stream's rate, in 1000-frame packets.
//
// Runs on the audio rendering thread. Each 128-frame block is mixed to mono and
// resampled to `targetRate`: going down, every output sample is the mean of the input
// samples it covers (a box filter: cheap, and it keeps most of the aliasing out of the
// speech band); going up (an 8 kHz headset), linear interpolation. Full packets go to
// the page as transferable buffers; so does the peak level, 20 times a second.

class PcmPacker extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frames } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frames = frames;
    this.packet = new Int16Array(frames);
    this.fill = 0;
    this.t = 0; // input samples seen
    this.next = this.step; // where the current output sample ends (downsampling) or sits (up)
    this.sum = 0;
    this.count = 0;
    this.prev = 0;
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

  take(x) {
    this.t += 1;
    if (this.step >= 1) {
      this.sum += x;
      this.count += 1;
      while (this.t >= this.next) {
        this.emit(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
        this.next += this.step;
      }
    } else {
      while (this.next <= this.t) {
        const frac = this.next - (this.t - 1);
        this.emit(this.prev + (x - this.prev) * frac);
        this.next += this.step;
      }
    }
    this.prev = x;
    this.peak = Math.max(this.peak, Math.abs(x));
    if (++this.levelSeen >= this.levelEvery) {
      this.port.postMessage({ level: this.peak });
      this.levelSeen = 0;
      this.peak = 0;
    }
  }

  flush() {
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
      this.take(x / channels.length);
    }
    return true;
  }
}

registerProcessor("whisperfarm-pcm-packer", PcmPacker);
