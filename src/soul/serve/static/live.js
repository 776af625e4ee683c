// The live page of `soul serve` (docs/live.md): a portrait opens a session (POST /v1/live), audio goes
// out over a WebSocket as 16-bit PCM at real-time pace, the fragmented MP4 that comes back is played
// with Media Source Extensions. No framework, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "soul.token";
  const PIECE_S = 0.1; // audio per message
  const el = {
    form: $("live-form"), image: $("image"), audio: $("audio"), prompt: $("prompt"), token: $("token"),
    example: $("use-example"), exampleNote: $("example-note"), startFile: $("start-file"), startMic: $("start-mic"),
    stop: $("stop"), error: $("form-error"), status: $("live-status"), video: $("live-video"),
    sent: $("stat-sent"), videoS: $("stat-video"), latency: $("stat-latency"),
  };
  // What a test (or a curious user) can read: state, seconds sent, whether audio is still going out.
  const live = (window.soulLive = { state: "idle", sentSeconds: 0, sending: false, chunks: 0, summary: null });

  let token = "";
  try { token = localStorage.getItem(TOKEN_KEY) || ""; } catch (_) { /* storage disabled */ }
  el.token.value = token;
  el.token.addEventListener("change", () => {
    token = el.token.value.trim();
    try { if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY); } catch (_) { /* */ }
  });
  const api = (path, options = {}) => {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", "Bearer " + token);
    return fetch(path, { ...options, headers, cache: "no-store" });
  };

  function setStatus(state, text) {
    live.state = state;
    el.status.dataset.state = state;
    el.status.textContent = text;
  }
  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = !text;
  }

  // ---- example inputs -------------------------------------------------------------------------

  let example = null; // {image: File, audio: File}
  el.example.addEventListener("click", async () => {
    try {
      const [img, snd] = await Promise.all(["portrait.png", "speech.wav"].map((n) => api("/v1/examples/" + n)));
      if (!img.ok || !snd.ok) throw new Error("this server has no example");
      example = { image: new File([await img.blob()], "portrait.png", { type: "image/png" }),
                  audio: new File([await snd.blob()], "speech.wav", { type: "audio/wav" }) };
      el.exampleNote.textContent = "Example portrait and speech selected.";
    } catch (err) {
      el.exampleNote.textContent = String(err.message || err);
    }
  });
  const chosenImage = () => el.image.files[0] || (example && example.image);
  const chosenAudio = () => el.audio.files[0] || (example && example.audio);

  // ---- audio: a file at real-time pace, or the microphone, as 16 kHz 16-bit PCM ----------------

  async function decodeTo16k(file) {
    const ctx = new AudioContext();
    const decoded = await ctx.decodeAudioData(await file.arrayBuffer());
    ctx.close();
    const frames = Math.ceil(decoded.duration * 16000);
    const offline = new OfflineAudioContext(1, Math.max(1, frames), 16000);
    const src = offline.createBufferSource();
    src.buffer = decoded;
    src.connect(offline.destination);
    src.start();
    return (await offline.startRendering()).getChannelData(0);
  }
  function pcm16(floats) {
    const out = new Int16Array(floats.length);
    for (let i = 0; i < floats.length; i++) out[i] = Math.max(-1, Math.min(1, floats[i])) * 32767;
    return out.buffer;
  }

  // ---- the session ------------------------------------------------------------------------------

  let session = null; // {ws, mediaSource, buffer, queue, stopAudio}

  async function open() {
    const image = chosenImage();
    if (!image) throw new Error("Pick a portrait image (or use the example).");
    const form = new FormData();
    form.append("image", image);
    if (el.prompt.value.trim()) form.append("prompt", el.prompt.value.trim());
    setStatus("opening", "Opening the session (loading the model, encoding the portrait)…");
    const resp = await api("/v1/live", { method: "POST", body: form });
    if (!resp.ok) {
      let line = resp.statusText;
      try { line = (await resp.json()).error || line; } catch (_) { /* */ }
      throw new Error(`${line} (HTTP ${resp.status})`);
    }
    return resp.json();
  }

  function player(mime) {
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) throw new Error("This browser cannot play " + mime + " with Media Source.");
    const mediaSource = new MediaSource();
    el.video.src = URL.createObjectURL(mediaSource);
    const state = { mediaSource, buffer: null, queue: [], ended: false };
    mediaSource.addEventListener("sourceopen", () => {
      state.buffer = mediaSource.addSourceBuffer(mime);
      state.buffer.mode = "segments";
      state.buffer.addEventListener("updateend", () => pump(state));
      pump(state);
    });
    return state;
  }
  function pump(state) {
    if (!state.buffer || state.buffer.updating) return;
    if (state.queue.length) {
      state.buffer.appendBuffer(state.queue.shift());
      return;
    }
    if (state.ended && state.mediaSource.readyState === "open") state.mediaSource.endOfStream();
    const b = state.buffer.buffered;
    if (b.length) {
      live.videoSeconds = b.end(b.length - 1);
      el.videoS.textContent = live.videoSeconds.toFixed(1) + " s";
      if (el.video.paused && !live.playStarted) { // start where the stream starts (a late joiner's does not start at 0)
        live.playStarted = true;
        el.video.currentTime = b.start(0);
        el.video.play().catch(() => { el.video.muted = true; el.video.play().catch(() => {}); });
      }
    }
  }

  async function start(feed) {
    showError("");
    stopSession();
    const opened = await open();
    const url = new URL(opened.ws, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (token) url.searchParams.set("token", token);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const play = player(opened.mime);
    session = { ws, play, stopAudio: null, id: opened.id };
    live.playStarted = false;
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") { play.queue.push(ev.data); pump(play); return; }
      const msg = JSON.parse(ev.data);
      if (msg.type === "chunk") {
        live.chunks += 1;
        el.latency.textContent = Math.round(msg.latency_s * 1000) + " ms";
      } else if (msg.type === "done") {
        live.summary = msg;
        play.ended = true;
        el.stop.hidden = true;
        pump(play);
        setStatus("done", `Done: ${msg.video_seconds.toFixed(1)} s of video; first frame after ${msg.first_frame_latency_s} s, realtime factor ${msg.realtime_factor}.`);
        ws.close();
      } else if (msg.type === "failed" || msg.type === "error") {
        showError(msg.error || "the session failed");
      }
    });
    ws.addEventListener("open", () => {
      setStatus("live", "Live: sending audio, playing the avatar as it comes.");
      el.stop.hidden = false;
      feed(ws);
    });
    ws.addEventListener("close", () => { live.sending = false; });
  }

  function sendFile(samples) {
    return (ws) => {
      const step = Math.round(PIECE_S * 16000);
      const began = performance.now();
      let i = 0;
      live.sending = true;
      const tick = () => {
        if (ws.readyState !== WebSocket.OPEN) { live.sending = false; return; }
        const due = Math.min(samples.length, Math.floor(((performance.now() - began) / 1000) * 16000));
        while (i + step <= due || (due === samples.length && i < samples.length)) {
          ws.send(pcm16(samples.subarray(i, Math.min(i + step, samples.length))));
          i += step;
        }
        live.sentSeconds = Math.min(i, samples.length) / 16000;
        el.sent.textContent = live.sentSeconds.toFixed(1) + " s";
        if (i >= samples.length) {
          live.sending = false;
          ws.send(JSON.stringify({ type: "end" }));
          return;
        }
        session.stopAudio = setTimeout(tick, 20);
      };
      tick();
    };
  }

  async function sendMicrophone(ws) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    const ctx = new AudioContext({ sampleRate: 16000 });
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(2048, 1, 1); // plain and everywhere; an AudioWorklet would need a module file
    let sent = 0;
    live.sending = true;
    proc.onaudioprocess = (e) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const x = e.inputBuffer.getChannelData(0);
      ws.send(pcm16(x));
      sent += x.length;
      live.sentSeconds = sent / 16000;
      el.sent.textContent = live.sentSeconds.toFixed(1) + " s";
    };
    source.connect(proc);
    proc.connect(ctx.destination);
    session.stopAudio = () => { proc.disconnect(); source.disconnect(); stream.getTracks().forEach((t) => t.stop()); ctx.close(); };
  }

  function stopSession() {
    if (!session) return;
    if (typeof session.stopAudio === "function") session.stopAudio();
    else if (session.stopAudio) clearTimeout(session.stopAudio);
    if (session.ws.readyState === WebSocket.OPEN) session.ws.send(JSON.stringify({ type: "end" }));
    live.sending = false;
  }

  el.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      if (!chosenImage()) throw new Error("Pick a portrait image (or use the example).");
      const audio = chosenAudio();
      if (!audio) throw new Error("Pick an audio file (or use the example, or the microphone).");
      const samples = await decodeTo16k(audio);
      await start(sendFile(samples));
    } catch (err) {
      setStatus("idle", "Not started.");
      showError(String(err.message || err));
    }
  });
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    el.startMic.hidden = false;
    el.startMic.addEventListener("click", async () => {
      try { await start((ws) => sendMicrophone(ws).catch((err) => showError("Microphone: " + (err.message || err)))); }
      catch (err) { showError(String(err.message || err)); }
    });
  }
  el.stop.addEventListener("click", () => { stopSession(); el.stop.hidden = true; });
})();
