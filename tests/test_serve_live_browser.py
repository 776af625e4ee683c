"""The live page of `soul serve` in a real browser (Debian's Chromium, driven by Playwright).

The page opens a session with a drawn portrait, sends an audio file at real-time pace over its
WebSocket and plays the fragmented MP4 that comes back with Media Source Extensions: the test sees
the video element's currentTime advance while the page is still sending audio, then the session's
summary. Chromium comes from apt (`.ci/run`): under CI=true a missing browser fails the test.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers.serve_process import Server, make_inputs
from tests.test_serve_browser import chromium_page, require_browser

pytestmark = pytest.mark.slow


def test_live_page_plays_the_avatar_while_audio_is_still_being_sent(tmp_path: Path) -> None:
    require_browser()
    image, speech = make_inputs(tmp_path, 5, 8.0)
    server = Server(tmp_path / "data", ["--preset", "mini-fast"]).start()
    try:
        with chromium_page(1000, 760) as (page, errors):
            page.goto(server.base + "/live")
            assert page.evaluate("MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42E01E, mp4a.40.2\"')")

            # no portrait: a one-line error, no session
            page.get_by_role("button", name="Stream the audio file").click()
            page.locator("#form-error").wait_for(state="visible")
            assert "portrait" in page.locator("#form-error").inner_text().lower()

            page.get_by_label("Portrait image").set_input_files(str(image))
            page.get_by_label("Audio to stream").set_input_files(str(speech))
            page.get_by_role("button", name="Stream the audio file").click()
            # the avatar plays while audio is still going out: currentTime past 1 s with more to send
            page.wait_for_function(
                "() => document.getElementById('live-video').currentTime > 1.0 && window.soulLive.sending",
                timeout=60_000,
            )
            seen = page.evaluate(
                "() => { const v = document.getElementById('live-video'); return {t: v.currentTime, sent: window.soulLive.sentSeconds,"
                " w: v.videoWidth, error: v.error && v.error.code, chunks: window.soulLive.chunks}; }"
            )
            assert seen["w"] == 64 and seen["error"] is None and seen["sent"] < 8.0 and seen["chunks"] >= 4, seen
            t_then = time.monotonic()
            page.wait_for_function("() => window.soulLive.state === 'done'", timeout=60_000)
            summary = page.evaluate("window.soulLive.summary")
            assert abs(summary["video_seconds"] - 8.0) < 0.1 and summary["realtime_factor"] > 1, summary
            assert time.monotonic() - t_then < 30
            page.wait_for_function("() => document.getElementById('live-video').currentTime > 6.0", timeout=20_000)
            page.screenshot(path=str(tmp_path / "live-page.png"))
            assert not errors, errors
    finally:
        server.kill(signal.SIGTERM)


def test_live_page_streams_the_microphone(tmp_path: Path) -> None:
    """The microphone path: Chromium's fake capture device (a tone) goes out as PCM, the avatar comes back."""
    require_browser()
    image, _ = make_inputs(tmp_path, 6, 1.0)
    server = Server(tmp_path / "data", ["--preset", "mini-fast"]).start()
    fake_mic = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    try:
        with chromium_page(1000, 760, args=fake_mic, permissions=("microphone",)) as (page, errors):
            page.goto(server.base + "/live")
            page.get_by_label("Portrait image").set_input_files(str(image))
            page.get_by_role("button", name="Use the microphone").click()
            page.wait_for_function("() => document.getElementById('live-video').currentTime > 1.0 && window.soulLive.sending", timeout=60_000)
            page.get_by_role("button", name="Stop").click()
            page.wait_for_function("() => window.soulLive.state === 'done'", timeout=60_000)
            summary = page.evaluate("window.soulLive.summary")
            sent = page.evaluate("window.soulLive.sentSeconds")
            assert summary["video_seconds"] > 1.0 and abs(summary["audio_seconds"] - sent) < 0.5, (summary, sent)
            assert not errors, errors
    finally:
        server.kill(signal.SIGTERM)
