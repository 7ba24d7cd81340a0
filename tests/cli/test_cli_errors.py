"""What a user who mistypes gets: usage errors exit 2 with one line naming the flag and
what it accepts; a Qdrant URL that is wrong or unreachable is one line and exit 1, before
anything is sent to a backend."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

import _pixel_backend
from molmo_rag.cli import main
from molmo_rag.testing.loopback import WaveSpeedServer
from molmo_rag.testing import samples


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MOLMO_RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MOLMO_RAG_BACKEND", raising=False)
    monkeypatch.delenv("MOLMO_RAG_QDRANT_URL", raising=False)
    _pixel_backend.register(monkeypatch)

    def invoke(*args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    image = samples.photo("coffee")
    image.thumbnail((96, 96))
    image.save(path)
    return path


USAGE_ERRORS = [
    (["search", ""], "QUERY", "query is empty"),
    (["search", "   "], "QUERY", "query is empty"),
    (["search", "x", "--kind", "pictures"], "--kind", "choose one of: image, slide, video"),
    (["search", "x", "--where", "count.person>>2"], "--where", "expected FIELD OP VALUE"),
    (["search", "x", "--where", "colour==red"], "--where", "unknown field"),
    (["search", "x", "--after", "9", "--before", "3"], "--after", "later than"),
    (["search", "x", "--qdrant-url", "ftp://qdrant.example"], "--qdrant-url", "expected http(s)://HOST"),
    (["caption", "{photo}", "--segment", "bogus"], "--segment", "'scenes' or 'fixed'"),
    (["index", "{photo}", "--segment", "bogus"], "--segment", "'scenes' or 'fixed'"),
    (["ask", "{photo}", ""], "QUESTION", "at least 1 character"),
    (["ask", "{photo}", "   "], "QUESTION", "at least 1 character"),
    (["count", "{photo}", ""], "WHAT", "at least 1 character"),
    (["caption", "{photo}", "--backend", "nope"], "--backend", "choose one of: local, wavespeed"),
    (["index", "{photo}", "--backend", "nope"], "--backend", "choose one of: local, wavespeed"),
    (["estimate", "{photo}", "--backend", "nope"], "--backend", "choose one of: local, wavespeed"),
    (["remove"], "SOURCE", "name the files, folders or URLs"),
    (["index", "{photo}", "--ray-actors", "2"], "--ray", "give --ray ADDRESS too"),
    (["index", "{photo}", "--ray-gpus", "1"], "--ray", "give --ray ADDRESS too"),
]


@pytest.mark.parametrize(("argv", "flag", "accepted"), USAGE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_usage_errors_exit_2_with_one_line_naming_the_flag(run, photo, tmp_path, argv, flag, accepted):
    argv = [a.format(photo=photo) for a in argv]
    if argv[0] in ("search", "index", "remove") and "--qdrant-url" not in argv:
        argv += ["--db", str(tmp_path / "db")]
    code, out, err = run(*argv)
    assert code == 2, err
    assert err.startswith(f"molmo-rag: error: {flag}: ") and accepted in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
    assert not (tmp_path / "db").exists()  # nothing was made


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NotQdrant(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_dns(monkeypatch):
    """Names under .invalid never resolve (RFC 6761); make that so without asking a resolver."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("case", ["refused", "dns", "not-qdrant"])
@pytest.mark.parametrize("command", ["index", "search"])
def test_a_wrong_qdrant_url_is_one_line_and_nothing_reaches_the_backend(
    run, photo, monkeypatch, plain_web_server, no_dns, case, command
):
    url, why = {
        "refused": (f"http://127.0.0.1:{_closed_port()}", "connection refused"),
        "dns": ("http://qdrant.invalid:6333", "does not resolve"),
        "not-qdrant": (plain_web_server, "HTTP 404: is this a Qdrant server?"),
    }[case]
    with WaveSpeedServer(api_key="k") as wavespeed:
        monkeypatch.setenv("WAVESPEED_API_KEY", "k")
        monkeypatch.setenv("WAVESPEED_BASE_URL", wavespeed.base_url)
        if command == "index":
            code, out, err = run("index", photo, "--backend", "wavespeed", "--qdrant-url", url)
        else:
            code, out, err = run("search", "a cup of coffee", "--qdrant-url", url)
        assert wavespeed.stats.requests == 0
    assert code == 1
    assert err.startswith("molmo-rag: error: ") and url in err and why in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
