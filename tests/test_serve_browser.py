"""The web UI of `soul serve` in a real browser (Debian's Chromium, driven by Playwright).

A real server subprocess on a free port; the page uploads a drawn portrait and babble through its
file inputs, submits a mini-fast job, shows its progress, then plays the finished video. The
screenshot lands in the test's tmp dir; with SOUL_UPDATE_DOCS=1 a shrunk copy replaces
docs/serve-ui.png (so `make test` never modifies the checkout).

Chromium comes from apt (`.ci/run` installs it): under CI=true a missing /usr/bin/chromium fails
the test, elsewhere it skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
SERVER_START_S = 180
JOB_S = 420

pytestmark = pytest.mark.slow


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(tmp_path: Path) -> Iterator[str]:
    """`soul serve` on a free port; yields its base URL, stops it afterwards."""
    import httpx

    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soul", "serve", "--port", str(port), "--data", str(tmp_path / "data"), "--preset", "mini-fast"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"soul serve exited with {proc.returncode}:\n{log_tail()}")
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"soul serve did not answer /v1/health within {SERVER_START_S} s:\n{log_tail()}")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    import soundfile as sf

    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    portrait, speech = tmp_path / "portrait.png", tmp_path / "speech.wav"
    draw_face(random_face(HELD_OUT_SEED + 9), size=256).save(portrait)
    sf.write(speech, synthesize_babble(2.0, 16000, seed=HELD_OUT_SEED + 9), 16000)
    return portrait, speech


# Every text the status line shows, and every source the <video> gets, in order.
RECORDER = """() => {
  window.__statusLog = [];
  window.__videoSrcs = [];
  const status = document.getElementById('job-status');
  const video = document.getElementById('video');
  const note = () => {
    const t = status.textContent;
    if (window.__statusLog[window.__statusLog.length - 1] !== t) window.__statusLog.push(t);
  };
  new MutationObserver(note).observe(status, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => window.__videoSrcs.push(video.getAttribute('src') || ''))
    .observe(video, {attributes: true, attributeFilter: ['src']});
  note();
}"""


@contextmanager
def chromium_page(width: int, height: int, *, args: tuple[str, ...] = (), permissions: tuple[str, ...] = ()) -> Iterator[tuple[Any, list[str]]]:
    """A page in headless Chromium (with extra ``args`` and granted ``permissions``) and the list
    its uncaught script errors go to."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args])
        try:
            page = browser.new_context(permissions=list(permissions), viewport={"width": width, "height": height}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def require_browser() -> None:
    """Debian's Chromium and Playwright, or a failure under CI=true (a skip elsewhere)."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is missing: it is in the dev extra (`make install`)")


def test_web_ui_generates_and_plays_a_video(tmp_path: Path) -> None:
    require_browser()
    _run(tmp_path)


def _run(tmp_path: Path) -> None:
    import httpx
    from PIL import Image

    started = time.monotonic()
    portrait, speech = _inputs(tmp_path)
    with serve(tmp_path) as base:
        example = httpx.get(f"{base}/v1/examples/portrait.png", timeout=10).status_code == 200
        with chromium_page(1100, 820) as (page, errors):
            page.goto(base + "/")
            page.wait_for_function("() => document.getElementById('server').dataset.state === 'ok'")
            assert page.get_by_role("button", name="Use the example").is_visible() == example

            # A bad upload: the server's one-line 400 shows, nothing is queued.
            page.get_by_label("Portrait image").set_input_files(str(speech))
            page.get_by_label("Speech audio").set_input_files(str(speech))
            page.get_by_role("button", name="Generate").click()
            error = page.locator("#form-error")
            error.wait_for(state="visible")
            assert "(HTTP 400)" in error.inner_text() and "\n" not in error.inner_text().strip()

            # The real job, through the page's inputs and controls.
            page.get_by_label("Portrait image").set_input_files(str(portrait))
            page.get_by_label("Speech audio").set_input_files([str(speech)])
            page.get_by_label("Prompt").fill("a person talking to the camera")
            page.get_by_label("Preset").select_option("mini-fast")
            page.get_by_label("Seed").fill("9")
            page.evaluate(RECORDER)
            page.get_by_role("button", name="Generate").click()
            page.wait_for_function(
                "() => ['succeeded', 'failed', 'cancelled'].includes(document.getElementById('job-status').dataset.status)",
                timeout=JOB_S * 1000,
            )
            status = page.locator("#job-status")
            log = page.evaluate("window.__statusLog")
            assert status.get_attribute("data-status") == "succeeded", (status.inner_text(), log)
            assert error.is_hidden()
            assert len(set(log)) >= 3 and any("Running" in t for t in log), log  # queued/running/done
            assert "Done:" in status.inner_text()

            # The finished video plays: frames decoded, time advancing.
            page.wait_for_function(
                "() => { const v = document.getElementById('video');"
                " return !v.hidden && (v.getAttribute('src') || '').endsWith('/video') && v.readyState >= 2; }",
                timeout=30_000,
            )
            t0 = page.evaluate(
                "async () => { const v = document.getElementById('video'); v.muted = true;"
                " if (v.ended) v.currentTime = 0; await v.play(); return v.currentTime; }"
            )
            page.wait_for_function("t0 => document.getElementById('video').currentTime > t0 + 0.1", arg=t0, timeout=10_000)
            video = page.evaluate(
                "() => { const v = document.getElementById('video');"
                " return {readyState: v.readyState, duration: v.duration, width: v.videoWidth, error: v.error && v.error.code}; }"
            )
            assert video["readyState"] >= 2 and video["width"] > 0 and video["error"] is None, video
            assert 1.5 < video["duration"] < 3.0, video

            job_id = page.evaluate("decodeURIComponent(location.hash.slice('#job='.length))")
            download = page.get_by_role("link", name="Download MP4")
            assert download.get_attribute("href") == f"/v1/jobs/{job_id}/video"
            assert page.get_by_role("button", name="Cancel job").count() == 0
            assert page.get_by_role("button", name="Delete job").is_visible()
            page.wait_for_function(
                "id => [...document.querySelectorAll('#queue li')].some(li => li.dataset.status === 'succeeded')",
                arg=job_id,
            )
            srcs = page.evaluate("window.__videoSrcs")
            print("status texts:", log, "\nvideo sources:", srcs)

            # Screenshot at a frame mid-way, paused.
            page.evaluate(
                "() => new Promise(done => { const v = document.getElementById('video'); v.pause();"
                " v.addEventListener('seeked', done, {once: true}); v.currentTime = Math.min(1, v.duration / 2); })"
            )
            shot = tmp_path / "serve-ui.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("SOUL_UPDATE_DOCS") == "1":
                small = Image.open(shot).convert("RGB")
                small = small.resize((small.width * 3 // 4, small.height * 3 // 4), Image.Resampling.LANCZOS)
                small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(PROJECT_ROOT / "docs" / "serve-ui.png", optimize=True)

            # A narrow window: one column, nothing wider than the viewport.
            page.set_viewport_size({"width": 360, "height": 800})
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            page.screenshot(path=str(tmp_path / "serve-ui-narrow.png"), full_page=True)
            assert overflow <= 0, f"the page is {overflow}px wider than a 360px window"
            assert not errors, errors
    print(f"browser test took {time.monotonic() - started:.1f} s")
