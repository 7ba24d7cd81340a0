"""Keys never leak: the whole pipeline (``index``, ``search``, ``caption --json``) in real
processes, with a sentinel API key, against loopback servers made to fail in ways that
echo request data back (a 401 whose message holds the key, 500s whose bodies and headers
echo the request headers, a redirect to another host, an error envelope inside an HTTP 200),
logging at DEBUG to a file, and then a search for the sentinels in everything the runs left:
stdout, stderr, the log file, the failure JSON, the result cache's bytes and every file of the
Qdrant folder. Also with the key in the base URL's query string (``?key=...``) and as the
password of a media URL (``http://user:PASSWORD@127.0.0.1:port/photo.png``), and the
exception texts (and their causes) of the Python API.

Reproduce by hand: ``python -m molmo_rag.testing.loopback wavespeed --api-key sk-SENTINEL-...``,
the printed exports, then ``python -c "import logging, sys; logging.basicConfig(level=10,
filename='debug.log'); from molmo_rag.cli import main; sys.exit(main(sys.argv[1:]))" index
FOLDER --backend wavespeed --db /tmp/db`` and ``grep -r SENTINEL debug.log /tmp/db ~/.cache/molmo-rag``.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("qdrant_client")

from molmo_rag.testing.loopback import OpenAIServer, WaveSpeedServer

KEY = "sk-SENTINEL-9f8e7d6c5b4a"
USER, PASSWORD = "photographer", "pw-SENTINEL-3c2b1a0f9e8d"
PHOTOS = ("coffee", "chelsea", "rocket")
URL_PHOTO = "astronaut.png"  # served only with USER:PASSWORD
# every spelling a secret could take on the way out: raw, in a Basic header, URL-quoted
SENTINELS = [
    s.encode()
    for s in (
        KEY, PASSWORD, quote(KEY, safe=""), quote(PASSWORD, safe=""),
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), base64.b64encode(KEY.encode()).decode(),
    )
]
TIMEOUT = 120
CLI = (
    "import logging, sys; "
    "logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG, format='%(asctime)s %(name)s %(levelname)s %(message)s'); "
    "from molmo_rag.cli import main; sys.exit(main(sys.argv[2:]))"
)


def leaks(data: bytes | str) -> list[bytes]:
    data = data.encode() if isinstance(data, str) else data
    return [s for s in SENTINELS if s in data]


def assert_clean_tree(root: Path) -> int:
    """No sentinel in any file under ``root`` (every byte, SQLite WAL and shm included)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert not leaks(path.read_bytes()), path
    return len(files)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        self.server.respond(self)

    do_POST = do_PUT = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, respond):
        super().__init__((host, 0), _Handler)
        self.seen: list[tuple[str, str, dict]] = []
        self.respond = respond
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def root(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


def _photos(root: Path, names) -> Path:
    from molmo_rag.testing import samples

    for name in names:
        image = samples.photo(name)
        image.thumbnail((64, 64))
        image.save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("library"), PHOTOS)


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    """Serves its files only to USER:PASSWORD (Basic), 401 otherwise, echoing whatever
    Authorization it got in the body."""
    served = _photos(tmp_path_factory.mktemp("served"), [URL_PHOTO.removesuffix(".png")])
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def respond(h: _Handler) -> None:
        if h.headers.get("Authorization") != expected:
            return h._reply(401, json.dumps({"error": f"bad credentials {h.headers.get('Authorization')}"}).encode())
        path = served / h.path.split("?")[0].lstrip("/")
        if not path.is_file():
            return h._reply(404, json.dumps({"error": f"not found; you sent {dict(h.headers)}"}).encode())
        h._reply(200, path.read_bytes(), "image/png")

    server = _Server("127.0.0.1", respond)
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def elsewhere():
    """Another host (127.0.0.2): answers 500 and echoes every request header it received."""

    def respond(h: _Handler) -> None:
        h._reply(500, json.dumps({"code": 500, "message": f"echo: {dict(h.headers)} {h.path}", "data": None}).encode())

    try:
        server = _Server("127.0.0.2", respond)
    except OSError as exc:  # pragma: no cover - a loopback without 127.0.0.2
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    yield server
    server.shutdown()


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOLMO_RAG_", "OPENAI_", "WAVESPEED_", "OPENOCTOPUS_", "QDRANT_"))}
    env["MOLMO_RAG_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def run(tmp_path: Path, name: str, env: dict[str, str], *args: str, quiet_log: bool = False) -> subprocess.CompletedProcess:
    """``molmo-rag ARGS`` in its own process, logging at DEBUG to ``name.log``; nothing it
    printed or logged holds a sentinel."""
    log = tmp_path / f"{name}.log"
    proc = subprocess.run([sys.executable, "-c", CLI, str(log), *args], check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert "Traceback" not in proc.stderr, proc.stderr
    logged = log.read_text() if log.exists() else ""
    assert quiet_log or "httpx" in logged, "the run logged no request: is DEBUG logging on?"
    for what, text in (("stdout", proc.stdout), ("stderr", proc.stderr), ("log", logged)):
        found = leaks(text)
        assert not found, (what, found, [line for line in text.splitlines() if leaks(line)][:5])
    return proc


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_index_search_caption_with_echoing_failures_leak_no_key(library, photo_server, elsewhere, tmp_path):
    url = f"http://{USER}:{PASSWORD}@{photo_server.root.removeprefix('http://')}/{URL_PHOTO}"
    shown = f"{photo_server.root}/{URL_PHOTO}"
    db = tmp_path / "db"
    with WaveSpeedServer(api_key=KEY, latency=0.2) as ws:  # jobs that are polled
        env = {**base_env(tmp_path), "WAVESPEED_BASE_URL": ws.base_url, "WAVESPEED_API_KEY": KEY}
        echoed = f"{{'Authorization': 'Bearer {KEY}', 'X-Api-Key': '{KEY}'}}"
        # a submission answered 500 with the request headers in the body and in a header
        # (a POST that may have made a job: that item fails), a poll redirected to another
        # host that echoes what it got (retried), a poll answered 500 with the headers echoed
        ws.inject("reply", route="submit", status=500, headers={"X-Echo-Authorization": f"Bearer {KEY}"},
                  body={"code": 500, "message": f"internal error; request headers: {echoed}", "data": None})
        ws.inject("reply", route="poll", status=307, headers={"Location": f"{elsewhere.root}/mirror?token={KEY}"})
        ws.inject("reply", route="poll", status=500, headers={"X-Echo-Authorization": f"Bearer {KEY}"},
                  body={"code": 500, "message": f"poll failed for Authorization: Bearer {KEY}", "data": None})
        missing = url.replace(URL_PHOTO, "missing.png")
        proc = run(tmp_path, "index", env, "index", str(library), url, missing, "--backend", "wavespeed", "--db", str(db), "--json")
        assert proc.returncode == 0, proc.stderr
        lines = jsonl(proc.stdout)
        failures = {r["error_type"]: r for r in lines if "error" in r}
        assert set(failures) == {"BackendError", "SourceNotFoundError"}, failures
        assert failures["BackendError"]["error_status"] == 500 and "***" in failures["BackendError"]["error"]
        assert failures["SourceNotFoundError"]["source"] == shown.replace(URL_PHOTO, "missing.png")
        indexed = {r["source"] for r in lines if r.get("status") == "indexed"}
        # every source has its point or its failure, and the URL's has no password in it
        assert indexed | {failures["BackendError"]["source"]} == {*(str(library / f"{p}.png") for p in PHOTOS), shown}
        assert ws.stats.faults_applied["reply"] == 3
        assert elsewhere.seen and all(KEY not in json.dumps(headers) for _, _, headers in elsewhere.seen)

        proc = run(tmp_path, "search", env, "search", "a photo", "--db", str(db), "--json", "--top", "10", quiet_log=True)
        assert proc.returncode == 0, proc.stderr
        assert {hit["source"] for hit in jsonl(proc.stdout)} == indexed

        # a 401 whose message quotes the key: the run stops, with one line (--no-cache: the
        # captions indexed above are cached, and caption reads the cache too)
        ws.clear_faults()
        ws.inject("reply", route="submit", status=401, body={"code": 401, "message": f"invalid key {KEY}; header was Bearer {KEY}", "data": None})
        proc = run(tmp_path, "caption", env, "caption", str(library / "coffee.png"), url, "--backend", "wavespeed", "--json", "--no-cache")
        assert proc.returncode == 1 and "HTTP 401" in proc.stderr and "***" in proc.stderr, proc.stderr


    assert assert_clean_tree(tmp_path / "cache") >= 1
    assert assert_clean_tree(db) >= 3
    for log in tmp_path.glob("*.log"):
        assert not leaks(log.read_bytes()), log


def test_key_in_the_base_url_query_string_leaks_nowhere(library, tmp_path):
    with OpenAIServer(api_key=KEY, latency=0.0) as server:
        env = {**base_env(tmp_path), "OPENAI_BASE_URL": f"{server.base_url}?key={KEY}", "OPENAI_API_KEY": KEY}
        proc = run(tmp_path, "caption", env, "caption", str(library / "rocket.png"), "--backend", "openai", "--json")
        assert proc.returncode == 1
        (failure,) = jsonl(proc.stdout)
        assert failure["error_status"] == 404  # the key in the query string broke the path
        assert server.stats.requests >= 1
    assert_clean_tree(tmp_path)


def test_an_error_envelope_inside_an_http_200_quoting_the_key(library, tmp_path):
    """WaveSpeed answers some errors as HTTP 200 with an error envelope; its message is read
    from the body and must be redacted like an HTTP error's."""
    with WaveSpeedServer(api_key=KEY, latency=0.0) as ws:
        env = {**base_env(tmp_path), "WAVESPEED_BASE_URL": ws.base_url, "WAVESPEED_API_KEY": KEY}
        ws.inject("reply", route="submit", status=200, body={"code": 401, "message": f"Unauthorized: key {KEY} is not valid", "data": None})
        proc = run(tmp_path, "caption", env, "caption", str(library / "chelsea.png"), "--backend", "wavespeed", "--json")
        assert proc.returncode == 1 and "code 401" in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
    assert_clean_tree(tmp_path)


def test_exception_texts_and_causes_of_the_python_api_leak_nothing(library, photo_server, elsewhere):
    """The same faults through ``analyze``: every failure's error, and every exception in its
    cause/context chain (httpx's included), says nothing secret in str(), repr() or args."""
    from molmo_rag.analyze import analyze
    from molmo_rag.backends.wavespeed import WaveSpeedBackend
    from molmo_rag.errors import AuthenticationError
    from molmo_rag.results import Failure
    from molmo_rag.tasks import Caption

    url = f"http://{USER}:{PASSWORD}@{photo_server.root.removeprefix('http://')}/{URL_PHOTO}"
    sources = [str(library / "coffee.png"), url, url.replace(URL_PHOTO, "nope.png"), f"http://{USER}:{PASSWORD}@127.0.0.1:9/refused.png"]
    outcomes = []
    with WaveSpeedServer(api_key=KEY, latency=0.2) as ws:
        ws.inject("reply", route="submit", status=500, headers={"X-Echo-Authorization": f"Bearer {KEY}"},
                  body={"code": 500, "message": f"request headers: Authorization: Bearer {KEY}", "data": None})
        ws.inject("reply", route="poll", times=2, status=307, headers={"Location": f"{elsewhere.root}/mirror?token={KEY}"})
        backend = WaveSpeedBackend(api_key=KEY, base_url=ws.base_url, max_retries=2, retry_wait=0.01, poll_interval=0.05)
        try:
            outcomes += analyze(sources, [Caption()], backend)
            assert ws.stats.faults_applied["reply"] == 3
            # then a refusal of the key inside an HTTP 200 (an error envelope): the run stops
            ws.inject("reply", route="submit", status=200, body={"code": 401, "message": f"key {KEY} refused", "data": None})
            with pytest.raises(AuthenticationError) as stopped:
                for outcome in analyze([str(library / "rocket.png")], [Caption()], backend):
                    outcomes.append(outcome)
        finally:
            backend.close()
    failures = [o for o in outcomes if isinstance(o, Failure)]
    kinds = {type(f.error).__name__ for f in failures}
    assert kinds >= {"BackendError", "SourceNotFoundError", "UnreachableSourceError"}, kinds
    assert "***" in str(stopped.value)
    for failure in failures:
        assert not leaks(json.dumps(failure.to_json())), failure.to_json()
    for first in [f.error for f in failures] + [stopped.value]:
        seen, error = set(), first
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            for text in (str(error), repr(error), repr(error.args)):
                assert not leaks(text), (type(error), text)
            error = error.__cause__ or error.__context__
    assert repr(backend) and not leaks(repr(backend)) and not leaks(repr(backend.options))


# -- issue 17: answers that echo the key, keys that cannot be sent ---------------------------


def test_answers_echoing_the_key_leak_it_nowhere(library, tmp_path):
    """A service that echoes the request's Authorization header (and the key) into the
    caption, the answer to a question and the model name, and an error whose code is the
    key: redacted at the backend boundary, before anything is printed, cached or indexed."""
    db = tmp_path / "db"
    echo = f"A photo. You sent {{authorization}} and key {KEY} (quoted {quote(KEY, safe='')})."
    with OpenAIServer(api_key=KEY, latency=0.0) as server:
        env = {**base_env(tmp_path), "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
        server.inject("answer", times=-1, text=echo, fields={"model": f"molmo2 for {KEY}"})
        proc = run(tmp_path, "caption", env, "caption", str(library / "coffee.png"), "--backend", "openai", "--json")
        (line,) = jsonl(proc.stdout)
        assert "Bearer ***" in line["caption"] and "key ***" in line["caption"] and line["model"] == "molmo2 for ***"
        proc = run(tmp_path, "ask", env, "ask", str(library / "rocket.png"), "Who sent this?", "--backend", "openai", "--json")
        (line,) = jsonl(proc.stdout)
        assert "key ***" in line["answer"], line
        proc = run(tmp_path, "index", env, "index", str(library), "--backend", "openai", "--db", str(db), "--json", "--ask", "Who sent this?")
        assert proc.returncode == 0, proc.stderr
        assert sum(1 for r in jsonl(proc.stdout) if r.get("status") == "indexed") == len(PHOTOS)
        proc = run(tmp_path, "search", env, "search", "a photo", "--db", str(db), "--json", quiet_log=True)
        hits = jsonl(proc.stdout)
        assert len(hits) == len(PHOTOS) and all("***" in hit["caption"] for hit in hits), hits

        server.clear_faults()
        server.inject("reply", route="chat", times=-1, status=400, body={"error": {"code": KEY, "message": f"bad request from {KEY}"}})
        proc = run(tmp_path, "ask-error", env, "ask", str(library / "chelsea.png"), "Is it fresh?", "--backend", "openai", "--json")
        (failure,) = jsonl(proc.stdout)
        assert failure["error_code"] == "***" and "***" in failure["error"], failure
    assert assert_clean_tree(tmp_path / "cache") >= 1
    assert assert_clean_tree(db) >= 3


@pytest.mark.parametrize(
    "variable, backend, bad",
    [
        ("OPENAI_API_KEY", "openai", f"{KEY}\nX-Injected: TAIL"),
        ("WAVESPEED_API_KEY", "wavespeed", f"{KEY}\r\nTAIL"),
        ("OPENOCTOPUS_API_KEY", "openoctopus", f"{KEY}\tTAIL"),
        ("WAVESPEED_API_KEY", "wavespeed", f"{KEY} TAIL"),
        ("OPENAI_API_KEY", "openai", f"{KEY}\u00e9TAIL"),
        ("OPENAI_API_KEY", "openai", f"{KEY}\udcffTAIL"),  # the byte 0xff: not text at all
    ],
    ids=["newline", "crlf", "tab", "space", "non-ascii", "not-utf8"],
)
def test_a_key_with_a_control_character_is_refused_in_one_line_naming_the_variable(library, tmp_path, variable, backend, bad):
    with OpenAIServer(api_key=KEY) as server:
        env = {**base_env(tmp_path), variable: bad, f"{variable.removesuffix('_API_KEY')}_BASE_URL": server.root_url + "/v1"}
        for command in (["caption", str(library / "coffee.png")], ["index", str(library), "--db", str(tmp_path / "db")]):
            proc = run(tmp_path, command[0], env, *command, "--backend", backend, quiet_log=True)
            assert proc.returncode == 2, (proc.stdout, proc.stderr)
            (line,) = proc.stderr.strip().splitlines()
            assert variable in line and "TAIL" not in proc.stdout + proc.stderr and KEY[:6] not in line, line
        assert server.stats.requests == 0  # nothing was sent with it
    assert not any(leaks(p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())


def test_a_key_option_with_a_newline_is_refused_naming_the_option_only():
    from molmo_rag.backends.openai import OpenAIBackend
    from molmo_rag.errors import UsageError

    with pytest.raises(UsageError) as refused:
        OpenAIBackend(api_key="sk-OPTION\nX: TAIL", base_url="http://127.0.0.1:9/v1")
    assert refused.value.option == "api_key" and "api_key" in str(refused.value)
    assert "TAIL" not in str(refused.value) and "OPTION" not in str(refused.value)


def test_a_qdrant_key_with_a_newline_is_refused_in_one_line_before_anything_is_sent(tmp_path):
    env = {**base_env(tmp_path), "QDRANT_API_KEY": f"{KEY}\nX-Injected: TAIL"}
    proc = run(tmp_path, "search", env, "search", "coffee", "--qdrant-url", "http://127.0.0.1:9", quiet_log=True)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert "QDRANT_API_KEY" in line and "TAIL" not in proc.stdout + proc.stderr and KEY[:6] not in line, line
