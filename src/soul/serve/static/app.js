// The Soul web UI: one page over the /v1 HTTP API (docs/serve.md). No framework, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const TOKEN_KEY = "soul.token";
  const QUEUE_EVERY_MS = 2000;
  const POLL_EVERY_MS = 1000;

  const el = {
    server: $("server"), form: $("job-form"), image: $("image"), audio: $("audio"),
    prompt: $("prompt"), preset: $("preset"), seed: $("seed"), token: $("token"),
    submit: $("submit"), formError: $("form-error"), example: $("use-example"),
    exampleNote: $("example-note"), status: $("job-status"), progress: $("job-progress"),
    video: $("video"), download: $("download"), cancel: $("cancel"),
    queue: $("queue"), queueEmpty: $("queue-empty"), queueSummary: $("queue-summary"),
  };

  // ---- HTTP -------------------------------------------------------------------------------

  let token = "";
  try { token = localStorage.getItem(TOKEN_KEY) || ""; } catch (_) { /* storage disabled */ }

  function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", "Bearer " + token);
    return fetch(path, { ...options, headers, cache: "no-store" });
  }

  // The server's one-line error ({"error": "..."}), or the best line we can find.
  async function errorLine(resp) {
    let line = "";
    try {
      const text = await resp.text();
      try { line = String(JSON.parse(text).error || JSON.parse(text).detail || ""); }
      catch (_) { line = text.split("\n").find((l) => l.trim()) || ""; }
    } catch (_) { /* body unreadable */ }
    line = line.trim().slice(0, 300) || resp.statusText || "request failed";
    const label = { 401: "Unauthorized", 413: "Upload too large", 429: "Queue full" }[resp.status];
    const prefix = label && !line.toLowerCase().includes(label.toLowerCase()) ? label + ": " : "";
    return `${prefix}${line} (HTTP ${resp.status})`;
  }

  // ---- formatting -------------------------------------------------------------------------

  const seconds = (s) => (s == null ? "?" : s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);

  function ago(created) {
    if (!created) return "";
    const s = Math.max(0, Date.now() / 1000 - created);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(created * 1000).toLocaleDateString();
  }

  const shortId = (id) => String(id).slice(0, 8);

  function progressText(job) {
    const p = job.progress || {};
    switch (job.status) {
      case "queued":
        return "Queued: waiting for a worker.";
      case "running": {
        if (!p.chunks_total) return `Running: preparing (${seconds(p.elapsed_s || 0)} elapsed).`;
        let t = `Running: ${p.chunks_done || 0} of ${p.chunks_total} chunk${p.chunks_total === 1 ? "" : "s"} done`;
        if (p.frames) t += `, ${p.frames} frames`;
        t += `, ${seconds(p.elapsed_s || 0)} elapsed`;
        if (p.eta_s != null) t += `, about ${seconds(p.eta_s)} left`;
        return t + ".";
      }
      case "succeeded":
        return `Done: ${p.frames || 0} frames in ${seconds(p.elapsed_s)}.`;
      case "failed":
        return `Failed: ${job.error || "unknown error"}`;
      case "cancelled":
        return "Cancelled.";
      default:
        return job.status;
    }
  }

  // ---- server status and the example ------------------------------------------------------

  const PRESET_HELP = {
    "mini-fast": "mini-fast: the distilled miniature model, quickest.",
    mini: "mini: the trained miniature model (64×64, 16 fps).",
    tiny: "tiny: random weights, renders noise: for smoke tests.",
    "wan22-ti2v-5b": "wan22-ti2v-5b: the full Wan2.2 model; needs its checkpoint on the server.",
  };
  const presetHelp = $("preset-help");
  const showPresetHelp = () => { presetHelp.textContent = PRESET_HELP[el.preset.value] || el.preset.value; };
  let presetTouched = false;
  el.preset.addEventListener("change", () => { presetTouched = true; showPresetHelp(); });

  async function refreshHealth() {
    try {
      const r = await api("/v1/health");
      if (r.status === 401) {
        el.server.textContent = "This server needs an access token: set it under “Access token”.";
        el.server.dataset.state = "warn";
        el.token.closest("details").open = true;
        return;
      }
      if (!r.ok) throw new Error(await errorLine(r));
      const h = await r.json();
      el.server.textContent = `Server ready. Default preset ${h.preset}; ${h.running} running, ${h.queued} queued.`;
      el.server.dataset.state = "ok";
      if (!presetTouched && h.preset) {
        if (![...el.preset.options].some((o) => o.value === h.preset)) el.preset.add(new Option(h.preset, h.preset));
        el.preset.value = h.preset;
        showPresetHelp();
      }
    } catch (e) {
      el.server.textContent = `Server unreachable: ${e.message || e}`;
      el.server.dataset.state = "error";
    }
  }

  const EXAMPLE = { image: "/v1/examples/portrait.png", audio: "/v1/examples/speech.wav" };
  const exampleFiles = { image: null, audio: null };

  async function probeExample() {
    try {
      const r = await api(EXAMPLE.image);
      el.example.hidden = !r.ok;
    } catch (_) {
      el.example.hidden = true;
    }
  }

  async function fetchFile(url, name) {
    const r = await api(url);
    if (!r.ok) throw new Error(await errorLine(r));
    const blob = await r.blob();
    return new File([blob], name, { type: blob.type || "application/octet-stream" });
  }

  // Put a file into a file input, so the form shows it; the submit falls back to exampleFiles.
  function setInputFile(input, file) {
    try {
      const dt = new DataTransfer();
      dt.items.add(file);
      input.files = dt.files;
      return true;
    } catch (_) {
      return false;
    }
  }

  el.example.addEventListener("click", async () => {
    el.example.disabled = true;
    el.exampleNote.textContent = "Fetching the example…";
    try {
      const [image, audio] = await Promise.all([
        fetchFile(EXAMPLE.image, "portrait.png"), fetchFile(EXAMPLE.audio, "speech.wav"),
      ]);
      setInputFile(el.image, image);
      setInputFile(el.audio, audio);
      exampleFiles.image = image;
      exampleFiles.audio = audio;
      el.exampleNote.textContent = "Example portrait and speech loaded.";
    } catch (e) {
      el.exampleNote.textContent = `Could not load the example: ${e.message || e}`;
    } finally {
      el.example.disabled = false;
    }
  });
  el.image.addEventListener("change", () => { exampleFiles.image = null; el.exampleNote.textContent = ""; });
  el.audio.addEventListener("change", () => { exampleFiles.audio = null; el.exampleNote.textContent = ""; });

  // ---- token ------------------------------------------------------------------------------

  el.token.value = token;
  if (token) el.token.closest("details").open = true;
  el.token.addEventListener("change", () => {
    token = el.token.value.trim();
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled */ }
    refreshHealth();
    probeExample();
    refreshQueue();
    if (current.id) select(current.id); // EventSource cannot send the token: re-watch
  });

  // ---- submit -----------------------------------------------------------------------------

  function showFormError(message) {
    el.formError.textContent = message;
    el.formError.hidden = !message;
  }

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showFormError("");
    const image = el.image.files[0] || exampleFiles.image;
    const audio = el.audio.files.length ? [...el.audio.files] : exampleFiles.audio ? [exampleFiles.audio] : [];
    if (!image) { showFormError("Choose a portrait image."); el.image.focus(); return; }
    if (!audio.length) { showFormError("Choose at least one speech audio file."); el.audio.focus(); return; }
    const seed = el.seed.value.trim();
    if (seed && !/^\d+$/.test(seed)) { showFormError("The seed must be a whole number (0 or more)."); el.seed.focus(); return; }

    const data = new FormData();
    data.append("image", image, image.name);
    for (const a of audio) data.append("audio", a, a.name);
    if (el.prompt.value.trim()) data.append("prompt", el.prompt.value.trim());
    data.append("preset", el.preset.value);
    if (seed) data.append("seed", seed);

    el.submit.disabled = true;
    el.submit.textContent = "Uploading…";
    try {
      const r = await api("/v1/jobs", { method: "POST", body: data });
      if (!r.ok) {
        showFormError(await errorLine(r));
        if (r.status === 401) el.token.closest("details").open = true;
        return;
      }
      const job = await r.json();
      select(job.id, { preset: el.preset.value, prompt: el.prompt.value.trim(), ...job });
      $("current").scrollIntoView({ block: "nearest", behavior: "smooth" });
      refreshQueue();
      refreshHealth();
    } catch (e) {
      showFormError(`Could not reach the server: ${e.message || e}`);
    } finally {
      el.submit.disabled = false;
      el.submit.textContent = "Generate";
    }
  });

  // ---- the current job --------------------------------------------------------------------

  const current = {
    id: null, job: null, source: null, timer: null,
    watch: 0,           // bumped on every (re)watch: a stale poll loop stops itself
    shown: null,        // "preview:<chunks>" or "video": what the <video> holds
    objectUrls: [],     // blob URLs made when a token is set (a <video> src cannot send headers)
  };

  function stopWatching() {
    current.watch += 1;
    if (current.source) { current.source.close(); current.source = null; }
    if (current.timer) { clearTimeout(current.timer); current.timer = null; }
  }

  function clearVideo() {
    el.video.pause();
    el.video.removeAttribute("src");
    el.video.load();
    el.video.hidden = true;
    el.download.hidden = true;
    el.download.removeAttribute("href");
    for (const u of current.objectUrls) URL.revokeObjectURL(u);
    current.objectUrls = [];
    current.shown = null;
  }

  function select(id, job) {
    stopWatching();
    if (current.id !== id) clearVideo();
    current.id = id;
    current.job = null;
    try { history.replaceState(null, "", "#job=" + encodeURIComponent(id)); } catch (_) { /* file: URL */ }
    el.status.textContent = `Job ${shortId(id)}: loading…`;
    el.status.dataset.status = "loading";
    if (job && job.status) render({ progress: {}, ...job });
    markCurrentInQueue();
    watch(id);
  }

  function watch(id) {
    const gen = current.watch;
    if (!token && "EventSource" in window) {
      const source = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`);
      current.source = source;
      source.addEventListener("job", (e) => {
        try { render(JSON.parse(e.data)); } catch (_) { /* malformed event */ }
      });
      source.onerror = () => {
        // Closed after a final state, or the stream broke: either way poll from here on.
        source.close();
        if (current.source === source) current.source = null;
        if (current.watch === gen && !(current.job && FINAL.has(current.job.status))) poll(id, gen);
      };
    } else {
      poll(id, gen);
    }
  }

  async function poll(id, gen) {
    if (current.watch !== gen) return;
    try {
      const r = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      if (current.watch !== gen) return;
      if (r.status === 404) {
        el.status.textContent = `Job ${shortId(id)} no longer exists.`;
        el.status.dataset.status = "gone";
        el.cancel.hidden = true;
        return;
      }
      if (!r.ok) {
        el.status.textContent = await errorLine(r);
        el.status.dataset.status = "error";
      } else {
        render(await r.json());
      }
    } catch (e) {
      el.status.textContent = `Lost the server (${e.message || e}); retrying…`;
    }
    if (current.watch === gen && !(current.job && FINAL.has(current.job.status))) {
      current.timer = setTimeout(() => poll(id, gen), POLL_EVERY_MS);
    }
  }

  function render(job) {
    if (!job || job.id !== current.id) return;
    const was = current.job && current.job.status;
    current.job = job;
    const p = job.progress || {};
    el.status.textContent = `Job ${shortId(job.id)} (${job.preset || "default preset"}): ${progressText(job)}`;
    el.status.dataset.status = job.status;

    el.progress.hidden = job.status === "cancelled" || job.status === "failed";
    if (job.status === "succeeded") {
      el.progress.max = 1; el.progress.value = 1;
    } else if (p.chunks_total) {
      el.progress.max = p.chunks_total; el.progress.value = p.chunks_done || 0;
    } else {
      el.progress.removeAttribute("value"); // indeterminate
    }
    el.progress.setAttribute("aria-valuetext", progressText(job));

    el.cancel.hidden = false;
    el.cancel.textContent = FINAL.has(job.status) ? "Delete job" : "Cancel job";
    el.cancel.disabled = false;

    if (job.status === "succeeded") showVideo(job.id, "video");
    else if (job.status === "running" && (p.chunks_done || 0) > 0) showVideo(job.id, "preview", p.chunks_done);
    updateQueueItem(job);
    if (FINAL.has(job.status) && was && was !== job.status) {
      stopWatching();
      refreshQueue();
      refreshHealth();
    }
  }

  async function videoUrl(id, kind, chunks) {
    const path = `/v1/jobs/${encodeURIComponent(id)}/${kind}` + (kind === "preview" ? `?chunks=${chunks}` : "");
    if (!token) return path;
    const r = await api(path);
    if (!r.ok) throw new Error(await errorLine(r));
    const url = URL.createObjectURL(await r.blob());
    current.objectUrls.push(url);
    return url;
  }

  async function showVideo(id, kind, chunks) {
    const want = kind === "preview" ? `preview:${chunks}` : "video";
    if (current.shown === want || current.shown === "video") return;
    const previous = current.shown;
    current.shown = want;
    let url;
    try {
      url = await videoUrl(id, kind, chunks);
    } catch (_) {
      if (current.shown === want) current.shown = previous; // try again on the next update
      return;
    }
    if (current.id !== id || current.shown !== want) return;
    const v = el.video;
    const wasPlaying = !v.paused && !v.ended;
    const at = v.currentTime || 0;
    v.src = url;
    v.hidden = false;
    v.setAttribute("aria-label", kind === "video" ? "Generated video" : `Preview: the first ${chunks} chunk(s)`);
    v.addEventListener("loadedmetadata", () => {
      // Keep the viewer's place when a longer preview replaces a shorter one.
      if (kind === "preview" && at > 0 && at < v.duration) v.currentTime = at;
      if (kind === "video" || wasPlaying || !previous) v.play().catch(() => { /* autoplay blocked: controls remain */ });
    }, { once: true });
    if (kind === "video") {
      el.download.href = url;
      el.download.download = `soul-${shortId(id)}.mp4`;
      el.download.hidden = false;
    }
  }

  el.cancel.addEventListener("click", async () => {
    const id = current.id;
    if (!id) return;
    const finished = current.job && FINAL.has(current.job.status);
    if (finished && !window.confirm("Delete this job and its video from the server?")) return;
    el.cancel.disabled = true;
    try {
      const r = await api(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (r.status === 204 || r.status === 404) {
        stopWatching();
        clearVideo();
        current.id = null;
        current.job = null;
        el.status.textContent = `Job ${shortId(id)} deleted.`;
        el.status.dataset.status = "deleted";
        el.progress.hidden = true;
        el.cancel.hidden = true;
        try { history.replaceState(null, "", location.pathname); } catch (_) { /* file: URL */ }
      } else if (r.ok) {
        el.status.textContent = `Job ${shortId(id)}: cancelling (a running job stops after its current chunk).`;
        if (current.id === id && !current.source && !current.timer) { stopWatching(); watch(id); }
      } else {
        el.status.textContent = `Job ${shortId(id)}: ${await errorLine(r)}`;
      }
    } catch (e) {
      el.status.textContent = `Could not reach the server: ${e.message || e}`;
    } finally {
      el.cancel.disabled = false;
      refreshQueue();
    }
  });

  // ---- the queue --------------------------------------------------------------------------

  const items = new Map(); // id -> <li>

  function queueItem(id) {
    let li = items.get(id);
    if (li) return li;
    li = document.createElement("li");
    li.className = "job";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "job-select";
    button.innerHTML =
      '<span class="badge"></span><span class="job-id"></span><span class="job-preset"></span>' +
      '<span class="job-prompt"></span><span class="job-progress"></span><span class="job-age"></span>';
    button.addEventListener("click", () => select(id));
    li.append(button);
    items.set(id, li);
    return li;
  }

  function updateQueueItem(job) {
    const li = items.get(job.id);
    if (!li) return;
    const p = job.progress || {};
    const q = (sel) => li.querySelector(sel);
    q(".badge").textContent = job.status;
    q(".badge").dataset.status = job.status;
    q(".job-id").textContent = shortId(job.id);
    q(".job-preset").textContent = job.preset || "";
    q(".job-prompt").textContent = job.prompt || "(no prompt)";
    q(".job-progress").textContent =
      job.status === "running" && p.chunks_total ? `${p.chunks_done || 0}/${p.chunks_total} chunks`
        : job.status === "succeeded" ? `${p.frames || 0} frames` : "";
    q(".job-age").textContent = ago(job.created);
    q(".job-select").setAttribute("aria-label",
      `Job ${shortId(job.id)}, ${job.status}, preset ${job.preset || "default"}, ${ago(job.created)}: show it`);
    li.dataset.status = job.status;
  }

  function markCurrentInQueue() {
    for (const [id, li] of items) {
      const b = li.querySelector(".job-select");
      if (id === current.id) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }

  let queueBusy = false;
  async function refreshQueue() {
    if (queueBusy) return;
    queueBusy = true;
    try {
      const r = await api("/v1/jobs?limit=50&offset=0");
      if (r.status === 401) {
        el.queueSummary.textContent = "Set the access token to see the queue.";
        return;
      }
      if (!r.ok) { el.queueSummary.textContent = await errorLine(r); return; }
      const { jobs = [], total = jobs.length } = await r.json();
      const seen = new Set();
      jobs.forEach((job, i) => {
        seen.add(job.id);
        const li = queueItem(job.id);
        updateQueueItem(job);
        if (el.queue.children[i] !== li) el.queue.insertBefore(li, el.queue.children[i] || null);
      });
      for (const [id, li] of items) if (!seen.has(id)) { li.remove(); items.delete(id); }
      markCurrentInQueue();
      const count = (s) => jobs.filter((j) => j.status === s).length;
      el.queueEmpty.hidden = jobs.length > 0;
      el.queueSummary.textContent = jobs.length
        ? `${total} job${total === 1 ? "" : "s"}: ${count("running")} running, ${count("queued")} queued`
        : "";
    } catch (e) {
      el.queueSummary.textContent = `Queue unavailable: ${e.message || e}`;
    } finally {
      queueBusy = false;
    }
  }

  // ---- start ------------------------------------------------------------------------------

  refreshHealth();
  probeExample();
  refreshQueue();
  setInterval(() => { if (!document.hidden) refreshQueue(); }, QUEUE_EVERY_MS);
  setInterval(() => { if (!document.hidden) refreshHealth(); }, 10000);
  const fromHash = /^#job=(.+)$/.exec(location.hash);
  if (fromHash) select(decodeURIComponent(fromHash[1]));
})();
