import pytest

from molmo_rag import errors


def test_one_root():
    for name in ("InputError", "SourceNotFoundError", "CorruptMediaError", "UnsupportedTaskError",
                 "BackendError", "BackendTimeout", "RateLimitError", "MissingDependencyError",
                 "ConfigurationError", "AuthenticationError", "ResponseFormatError", "MediaTooLargeError"):
        assert issubclass(getattr(errors, name), errors.MolmoRagError)


def test_every_error_class_of_the_package_lives_in_errors_and_old_imports_still_work():
    from molmo_rag.backends import rest
    from molmo_rag import cache

    for name in ("JobFailedError", "JobNotFoundError", "InsufficientBalanceError"):
        assert getattr(rest, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), errors.BackendError)
    assert cache.CacheWriteError is errors.CacheWriteError
    assert issubclass(errors.CacheWriteError, errors.ConfigurationError)


def test_fatal_is_declared_on_the_root_and_false_unless_set():
    assert errors.MolmoRagError("x").fatal is False
    assert errors.BackendError("x").fatal is False
    assert errors.JobFailedError("x").fatal is False and errors.JobFailedError("x", fatal=True).fatal is True
    assert errors.InsufficientBalanceError("no credits").fatal is True
    marked = errors.UsageError("x")
    marked.fatal = True
    assert marked.fatal is True and errors.UsageError("y").fatal is False


def test_unsupported_task_names_capable_backends():
    exc = errors.UnsupportedTaskError("ask", "wavespeed", ["openai", "local"])
    assert "local, openai" in str(exc)


def test_missing_dependency_names_extra():
    exc = errors.MissingDependencyError("torch", "local")
    assert "molmo-rag[local]" in str(exc)
    assert isinstance(exc, ImportError)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer sk-abc123456",
        '{"api_key": "sk-abc123456"}',
        "url?api_key=sk-abc123456&x=1",
        "failed with key sk-abc123456",
    ],
)
def test_redact(text):
    assert "sk-abc123456" not in errors.redact(text, ["sk-abc123456"])


@pytest.mark.parametrize(
    "text,secret",
    [
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),  # the scheme word is not the secret
        ('{"Authorization": "Token abc123xyz"}', "abc123xyz"),
        ("https://maps.example/geo?key=AIzaSecret1&q=x", "AIzaSecret1"),
        ("password=hunter2hunter", "hunter2hunter"),
        ("client_secret: s3cr3tvalue", "s3cr3tvalue"),
    ],
)
def test_redact_without_knowing_the_secret(text, secret):
    assert secret not in errors.redact(text)


def test_redact_leaves_ordinary_words():
    assert errors.redact("a basic idea; the monkey=5") == "a basic idea; the monkey=5"


def test_registered_keys_and_url_credentials_never_reach_a_log_handler(caplog):
    import logging

    from molmo_rag.errors import redact, register_secret

    register_secret("sk-LIBRARY-SENTINEL-1234")
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        logging.getLogger("httpx").info("POST %s", "http://127.0.0.1:9/v1?x=sk-LIBRARY-SENTINEL-1234")
        logging.getLogger("httpcore.http11").debug("header %r", b"authorization: Bearer sk-LIBRARY-SENTINEL-1234")
        logging.getLogger("httpx").info("GET http://user:pw-secret@127.0.0.1:9/a.jpg")
    text = caplog.text
    assert "SENTINEL" not in text and "pw-secret" not in text and "http://***@127.0.0.1:9/a.jpg" in text
    assert redact("fetch https://alice:hunter2@example.org/x") == "fetch https://***@example.org/x"


def test_redact_secrets_removes_registered_keys_in_every_spelling_and_nothing_else():
    import base64
    from urllib.parse import quote

    key = "sk-ANSWER/SENTINEL+77"
    errors.register_secret(key)
    echoed = f"token: 5 cups; key {key}, quoted {quote(key, safe='')}, base64 {base64.b64encode(key.encode()).decode()}"
    assert errors.redact_secrets(echoed) == "token: 5 cups; key ***, quoted ***, base64 ***"
    assert errors.redact_secrets("A sign reads password: hunter2") == "A sign reads password: hunter2"


def test_a_key_inside_a_longer_base64_or_hex_text_is_redacted_whatever_comes_before_it():
    import base64

    key = "sk-SHIFTED-SENTINEL-0123"
    errors.register_secret(key)
    for prefix in ("", "B", "Be", "Bearer ", "Authorization: Bearer "):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            echoed = "trace=" + encode(f"{prefix}{key} and more".encode()).decode()
            assert "***" in errors.redact_secrets(echoed), (prefix, echoed)
    assert errors.redact_secrets(f"hex {key.encode().hex()}") == "hex ***"


def test_a_key_with_a_byte_that_is_not_text_can_be_registered_and_redacted():
    key = "sk-NOT-UTF8-\udcff-SENTINEL"  # os.environ's spelling of the byte 0xff
    errors.register_secret(key)
    assert errors.redact_secrets(f"echo {key}") == "echo ***"


def test_every_error_pickles_whole_type_message_and_attributes():
    """A failure sent back from a worker process (Ray, a process pool) keeps what the
    default pickling of an exception drops: the keyword arguments its initializer took."""
    import pickle

    cases = [
        errors.CorruptMediaError("photo.jpg cannot be decoded", source="/a/photo.jpg"),
        errors.UnsupportedTaskError("video", "openoctopus", ["local", "wavespeed"]),
        errors.ConfigurationError("no key", option="api_key"),
        errors.MissingDependencyError("ray[data]", "ray", "scale-out"),
    ]
    backend_error = errors.BackendError("rate limited", backend="wavespeed")
    backend_error.fatal = True
    cases.append(backend_error)
    for error in cases:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
    assert pickle.loads(pickle.dumps(cases[0])).source == "/a/photo.jpg"
    assert pickle.loads(pickle.dumps(backend_error)).fatal is True
