"""The web page end to end in real headless Chromium: uvicorn serves a small model on a free loopback
port; the browser uploads a clip and a longer recording through the page, then records three seconds
from Chromium's fake microphone (which plays a RAVDESS clip) and gets a result for it.

Needs Debian's `chromium` at /usr/bin/chromium and the `playwright` Python package (its own browsers
are not used). `make test` installs chromium with apt-get when it is missing and runs as root, and says
so; this test installs nothing and skips, naming what is missing, when there is no chromium.
"""

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

playwright_sync = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from voxemo.audio import load_audio  # noqa: E402
from voxemo.serve import create_app  # noqa: E402

from .conftest import DATA  # noqa: E402
from .small_pipeline import CLASSES, save_small_pipeline  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CLIP = DATA / "ravdess_speech" / "Actor_01" / "03-01-05-01-01-01-01.flac"  # angry, 3.7 s
MIC_CLIP = DATA / "ravdess_speech" / "Actor_02" / "03-01-03-02-01-01-02.flac"  # happy, played by the fake microphone
LONG_CLIPS = [DATA / "ravdess_speech" / "Actor_03" / f"03-01-{e:02d}-02-01-01-03.flac" for e in (5, 4, 3, 6)]
TIMEOUT_MS = 60_000


def missing_chromium() -> str | None:
    """None when the browser is there, else the reason the test skips."""
    if CHROMIUM.exists():
        return None
    return (f"{CHROMIUM} is missing: `make test` installs Debian's chromium when run as root with apt-get; "
            "elsewhere `apt-get install chromium` (as root) and run the tests again")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The service on a free 127.0.0.1 port, in a thread; yields its base URL."""
    from voxemo.predict import load_model

    predictor = load_model(save_small_pipeline(tmp_path_factory.mktemp("model") / "small"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(predictor), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The fake microphone's WAV (16-bit, 48 kHz, as Chromium wants it) and a 15 s recording."""
    d = tmp_path_factory.mktemp("audio")
    sf.write(d / "mic.wav", load_audio(MIC_CLIP, 48000), 48000, subtype="PCM_16")
    sf.write(d / "long.wav", np.concatenate([load_audio(p, 16000) for p in LONG_CLIPS]), 16000, subtype="PCM_16")
    return d


@pytest.fixture(scope="module")
def browser(files):
    reason = missing_chromium()
    if reason:
        pytest.skip(reason)
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless=new", "--no-sandbox", "--disable-gpu",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={files / 'mic.wav'}",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        ])
        yield b
        b.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    """Into pytest's tmp folder, or into $VOXEMO_SCREENSHOT_DIR to look at them; after the bars' animation."""
    d = Path(os.environ.get("VOXEMO_SCREENSHOT_DIR", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(600)
    page.screenshot(path=str(d / name), full_page=True)


def test_upload_and_record_in_the_browser(browser, server, files, tmp_path):  # browser first: skips before the server starts
    page = browser.new_page(viewport={"width": 900, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_function("document.getElementById('model-info').textContent.includes('voxemo_net')")

    # 1. upload a clip through the file input: the label and one bar per class appear
    with page.expect_response(lambda r: "/predict" in r.url) as resp:
        page.set_input_files("#file", str(CLIP))
    assert resp.value.status == 200
    answer = resp.value.json()
    page.wait_for_selector("#result", state="visible")
    assert page.text_content("#label") == answer["label"] and answer["label"] in CLASSES
    assert page.locator("#bars .bar").count() == len(CLASSES)
    assert CLIP.name in page.text_content("#source")
    top = page.locator(f'#bars .bar[data-label="{answer["label"]}"] .fill')
    page.wait_for_function("el => el.getBoundingClientRect().width > 0", arg=top.element_handle())
    assert not page.is_visible("#timeline")  # a 3.7 s clip has no timeline
    screenshot(page, tmp_path, "upload.png")

    # 2. a 15 s recording: the timeline appears, as coloured segments with times
    with page.expect_response(lambda r: "/predict" in r.url) as resp:
        page.set_input_files("#file", str(files / "long.wav"))
    segments = resp.value.json()["timeline"]["segments"]
    page.wait_for_selector("#timeline", state="visible")
    assert page.locator("#tl-track .tl-seg").count() == len(segments) > 0
    assert page.locator("#tl-table tbody tr").count() == len(segments)
    assert "long.wav" in page.text_content("#source")
    screenshot(page, tmp_path, "timeline.png")

    # 3. record about 3 s from the (fake) microphone, stop: the page sends a WAV and shows its result
    page.click("#record")
    page.wait_for_function("document.getElementById('record-text').textContent === 'Stop'")
    page.wait_for_timeout(3000)
    with page.expect_response(lambda r: "/predict" in r.url) as resp:
        page.click("#record")
    assert resp.value.status == 200, resp.value.text()
    rec = resp.value.json()
    assert 2.0 < rec["duration"] < 5.0 and rec["label"] in CLASSES
    page.wait_for_function("document.getElementById('source').textContent.startsWith('recording.wav')")
    assert page.text_content("#label") == rec["label"]
    assert page.locator("#bars .bar").count() == len(CLASSES)
    assert page.text_content("#record-text") == "Record" and not page.is_visible("#error")
    screenshot(page, tmp_path, "recording.png")

    # 4. a file that is not audio: the service's message is shown, the page keeps working
    (tmp_path / "notes.txt").write_text("not a recording")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#error", state="visible")
    assert "notes.txt: not an audio file" in page.text_content("#error")
    assert errors == []
    page.close()
