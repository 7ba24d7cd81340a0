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
