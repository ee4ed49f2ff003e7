// The live page in the browser: microphone → worklet → /live/ws, and the text coming back.
//
// The page's Python side owns the button and the messages: it calls `start(config)` and
// `stop()`, and hears every change of state as the `whisperfarm_live` event
// ({state: "live" | "reconnecting" | "stopping" | "done" | "error", kind, job_id, ...}).
// Everything per word (text, level, elapsed time) is drawn here, without a server round
// trip. Packets stay in `unacked` until the GUI acknowledges them, so a dropped socket
// reconnects with the session's resume key and sends again from the frame it names.

(() => {
  const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000, 4000];
  const FRAMES_PER_PACKET = 1000;
  let run = null;
  let reconnects = 0; // resumed sockets since the page loaded (tests and benches read it)

  function $(name) {
    return document.querySelector(`[data-live="${name}"]`);
  }

  function report(state, extra = {}) {
    emitEvent("whisperfarm_live", { state, ...extra });
  }

  function microphoneError(error) {
    if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) return "permission";
    return "no_device";
  }

  function drawText() {
    const box = $("scroll");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    $("committed").textContent = run.segments.join(" ");
    $("partial").textContent = (run.segments.length && run.partial ? " " : "") + run.partial;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function drawClock() {
    const seconds = Math.floor((performance.now() - run.began) / 1000);
    const m = Math.floor(seconds / 60);
    $("elapsed").textContent = `${m}:${String(seconds % 60).padStart(2, "0")}`;
  }

  function drawLevel(peak) {
    const db = 20 * Math.log10(Math.max(peak, 1e-5));
    const width = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    $("level").style.width = `${width}%`;
    $("level").parentElement.setAttribute("aria-valuenow", String(Math.round(width)));
  }

  function socketUrl(query) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/live/ws?${query}`;
  }

  function send(data) {
    if (run.ws && run.ready) run.ws.send(data);
  }

  function onPacket(buffer) {
    run.unacked.push({ start: run.frames, data: buffer });
    run.frames += buffer.byteLength / 2;
    send(buffer);
  }

  function forget(frames) {
    run.unacked = run.unacked.filter((p) => p.start + p.data.byteLength / 2 > frames);
  }

  function resend(frames) {
    forget(frames);
    for (const p of run.unacked) {
      run.ws.send(frames > p.start ? p.data.slice((frames - p.start) * 2) : p.data);
    }
    if (run.flushed) run.ws.send(JSON.stringify({ type: "stop" }));
  }

  function onMessage(message) {
    if (message.type === "ready") {
      run.resume = message.resume;
      run.ready = true;
      run.attempt = 0;
      resend(message.frames);
      if (run.reconnecting) {
        run.reconnecting = false;
        reconnects += 1;
        report(run.flushed ? "stopping" : "live");
      }
    } else if (message.type === "ack") {
      forget(message.frames);
    } else if (message.type === "accepted") {
      run.jobId = message.job_id;
      report(run.flushed ? "stopping" : "live", { job_id: message.job_id });
    } else if (message.type === "partial") {
      run.partial = message.text.trim();
      drawText();
    } else if (message.type === "segment") {
      if (message.id <= run.lastSegment) return; // sent again after a reconnect
      run.lastSegment = message.id;
      run.segments.push(message.text.trim());
      run.partial = "";
      drawText();
    } else if (message.type === "reconnecting") {
      report("reconnecting");
    } else if (message.type === "resumed") {
      report(run.flushed ? "stopping" : "live");
    } else if (message.type === "final") {
      finish("done", { job_id: message.job_id });
    } else if (message.type === "error") {
      finish("error", { kind: message.kind, detail: message.detail || "", retry_after: message.retry_after });
    }
  }

  function connect(query) {
    const ws = new WebSocket(socketUrl(query));
    run.ws = ws;
    run.ready = false;
    ws.onmessage = (event) => run && run.ws === ws && onMessage(JSON.parse(event.data));
    ws.onclose = () => run && run.ws === ws && dropped();
  }

  function dropped() {
    run.ready = false;
    if (!run.resume || run.attempt >= RECONNECT_DELAYS_MS.length) {
      finish("error", { kind: "disconnected" });
      return;
    }
    if (!run.reconnecting) {
      run.reconnecting = true;
      report("reconnecting");
    }
    const delay = RECONNECT_DELAYS_MS[run.attempt++];
    setTimeout(() => run && run.reconnecting && connect(`resume=${encodeURIComponent(run.resume)}&seen=${run.lastSegment}`), delay);
  }

  function release() {
    if (!run) return;
    clearInterval(run.clock);
    if (run.stream) run.stream.getTracks().forEach((track) => track.stop());
    if (run.context) run.context.close();
    run.stream = null;
    run.context = null;
    $("level").style.width = "0%";
  }

  function finish(state, extra) {
    if (!run) return;
    release();
    if (run.ws) run.ws.close();
    run = null;
    report(state, extra);
  }

  async function capture(config) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      finish("error", { kind: "insecure" });
      return;
    }
    try {
      // Whisper was trained on plain recordings: the browser's voice-call processing
      // (echo cancelling, noise suppression, gain riding) only takes detail away.
      run.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      finish("error", { kind: microphoneError(error), detail: String(error) });
      return;
    }
    if (!run) return; // stopped while the browser asked for permission
    run.context = new AudioContext();
    await run.context.audioWorklet.addModule(config.worklet);
    if (!run) return;
    const rate = config.rate || run.context.sampleRate;
    run.node = new AudioWorkletNode(run.context, "whisperfarm-pcm-packer", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      processorOptions: { targetRate: rate, frames: FRAMES_PER_PACKET },
    });
    run.node.port.onmessage = (event) => {
      if (!run) return;
      if (event.data.pcm) onPacket(event.data.pcm);
      else if (event.data.level !== undefined) drawLevel(event.data.level);
      else if (event.data.flushed) flushed();
    };
    run.context.createMediaStreamSource(run.stream).connect(run.node);
    run.began = performance.now();
    run.clock = setInterval(drawClock, 250);
    drawClock();
    connect(`ticket=${encodeURIComponent(config.ticket)}&rate=${rate}`);
  }

  function flushed() {
    run.flushed = true;
    release();
    send(JSON.stringify({ type: "stop" }));
  }

  window.whisperfarmLive = {
    start(config) {
      if (run) return;
      run = {
        segments: [], lastSegment: -1, partial: "", unacked: [], frames: 0, attempt: 0,
        began: performance.now(),
      };
      drawText();
      capture(config).catch((error) => finish("error", { kind: "no_device", detail: String(error) }));
    },
    stop() {
      if (!run || run.flushed) return;
      if (!run.node) {
        finish("done", {});
        return;
      }
      report("stopping");
      run.node.port.postMessage("flush");
    },
    rate() {
      return run && run.context ? run.context.sampleRate : null;
    },
    reconnects() {
      return reconnects;
    },
  };
})();
