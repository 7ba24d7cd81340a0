import pytest

from molmo_rag import errors


def test_one_root():
    for name in ("InputError", "SourceNotFoundError", "CorruptMediaError", "UnsupportedTaskError",
                 "BackendError", "BackendTimeout", "RateLimitError", "MissingDependencyError",
                 "ConfigurationError", "AuthenticationError", "ResponseFormatError", "MediaTooLargeError"):
        assert issubclass(getattr(errors, name), errors.MolmoRagError)


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
