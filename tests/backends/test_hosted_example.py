"""The worked example of docs/architecture.md ("How to add a hosted backend"), for real.

"Acme" is a made-up submit-and-poll API: ``POST /v1/jobs`` with ``{model, prompt, image}``
answers ``{job_id, state: "queued"}``; ``GET /v1/jobs/{id}`` answers the job, whose
``state`` ends ``done`` (``text``) or ``error`` (``error: {code, reason, transient}``).
The backend is the class below, filling in the hooks of
:class:`molmo_rag.backends.jobs.SubmitAndPoll`, plus one registry line (``BACKENDS``); the
API is served on 127.0.0.1 by a server on the loopback machinery, also below. It runs
through the same contract cases as the shipped backends and through ``molmo-rag caption``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from molmo_rag.backends.base import BACKENDS, BackendEnv, Request, get_backend
from molmo_rag.backends.jobs import SubmitAndPoll
from molmo_rag.backends.rest import RestClient, data_uri, media_payload
from molmo_rag.cost import Price
from molmo_rag.errors import JobFailedError, MalformedAnswerError, ResponseFormatError
from molmo_rag.tasks import Caption
from molmo_rag.testing.loopback import LoopbackServer
from molmo_rag.testing.loopback._model import answer, inspect_media
from molmo_rag.testing.loopback._server import Incoming, Reply
from molmo_rag.testing.samples import photo

from rest_helpers import FAST, images
from test_contract import (  # the contract cases, run here against the acme fixture below
    test_a_broken_item_fails_alone,
    test_capabilities_are_declared_for_both_inputs,
    test_each_item_of_a_batch_gets_its_own_result,
    test_every_task_runs_or_names_who_can,
)

__all__ = [
    "test_a_broken_item_fails_alone",
    "test_capabilities_are_declared_for_both_inputs",
    "test_each_item_of_a_batch_gets_its_own_result",
    "test_every_task_runs_or_names_who_can",
]


# -- the backend: one class --------------------------------------------------------------


class AcmeBackend(SubmitAndPoll[dict]):
    """Molmo2 on the Acme API (images; prompts are free text)."""

    name: ClassVar[str] = "acme"
    capabilities: ClassVar[dict] = {"image": frozenset({"caption", "ask", "count", "scene"})}
    default_model: ClassVar[str] = "acme/molmo2"
    price: ClassVar[Price] = Price(image_usd=0.001, backend="Acme")
    env: ClassVar[BackendEnv] = BackendEnv(api_key="ACME_API_KEY", base_url="ACME_BASE_URL")
    default_base_url: ClassVar[str] = "https://api.acme.example"

    def submit_url(self, request: Request) -> str:
        return f"{self.base_url}/v1/jobs"

    async def submit_body(self, request: Request, client: RestClient) -> dict:
        image = request.item.remote_url or data_uri(*await media_payload(request.item))
        return {"model": self.model, "prompt": request.task.prompt("image"), "image": image}

    def parse_job(self, body: Any, job_id: str | None) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("job_id"), str) or not isinstance(body.get("state"), str):
            raise ResponseFormatError("acme: answer has no job_id and state", backend=self.name)
        return body

    def job_id(self, job: dict) -> str:
        return job["job_id"]

    def poll_url(self, job_id: str) -> str:
        return f"{self.base_url}/v1/jobs/{job_id}"

    def is_done(self, job: dict) -> bool:
        return job["state"] in ("done", "error")

    def succeeded(self, job: dict) -> bool:
        return job["state"] == "done"

    def failure(self, job: dict) -> JobFailedError:
        error = job.get("error") if isinstance(job.get("error"), dict) else {}
        return JobFailedError(
            self.redact(f"acme: job {job['job_id']} failed: {error.get('reason') or 'no reason given'}"),
            backend=self.name,
            code=error.get("code"),
            resubmit=error.get("transient") is True,
            job_id=job["job_id"],
        )

    def output(self, job: dict) -> str:
        if not isinstance(job.get("text"), str):
            raise MalformedAnswerError(f"acme: job {job['job_id']} is done without a text", backend=self.name)
        return job["text"]


REGISTRY_LINE = ("acme", f"{__name__}:AcmeBackend")
"""What ``molmo_rag.vocabulary.BACKENDS`` gets for a shipped backend: one line."""


# -- the API on 127.0.0.1 ----------------------------------------------------------------


class AcmeServer(LoopbackServer):
    kind = "acme"

    def setup_routes(self) -> None:
        self.route("POST", r"/v1/jobs", "submit", self._submit)
        self.route("GET", r"/v1/jobs/(?P<id>[0-9a-f]+)", "poll", self._job)

    def unauthorized(self, provided):
        return Reply(401, {"error": {"code": "unauthorized", "message": "Bad or missing API key."}})

    def error_reply(self, status, params):
        return Reply(status, {"error": {"code": params.get("code", str(status)), "message": params.get("message", "Try later.")}})

    def _submit(self, req: Incoming, match) -> Reply:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not isinstance(body.get("image"), str):
            return Reply(400, {"error": {"code": "invalid_request", "message": "prompt and image are required."}})
        info = inspect_media(self.media_bytes(body["image"]), "image")
        job = self.new_job("job", body, answer(info, task="prompt", text=body["prompt"]), media=info)
        return Reply(202, {"job_id": job.id, "state": "queued"})

    def _job(self, req: Incoming, match) -> Reply:
        job = self.jobs.get(match.group("id"))
        if job is None:
            return Reply(404, {"error": {"code": "not_found", "message": "No such job."}})
        if not job.done:
            return Reply(200, {"job_id": job.id, "state": "running"})
        if job.fail:
            error = {"code": job.fail.get("code", "gpu_lost"), "reason": job.fail.get("message", "GPU lost"),
                     "transient": job.fail.get("transient", True)}
            return Reply(200, {"job_id": job.id, "state": "error", "error": error})
        return Reply(200, job.answer_fields({"job_id": job.id, "state": "done", "text": job.answer_text}))


# -- the cases ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with AcmeServer(api_key="acme-key", latency=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def backend(server):
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BACKENDS, *REGISTRY_LINE)
        acme = get_backend("acme", base_url=server.base_url, api_key="acme-key", **FAST)
        yield acme
        acme.close()


def test_a_failed_job_classed_transient_is_submitted_anew(backend, server):
    server.reset_stats()
    server.inject("fail_job", times=1, code="gpu_lost")
    [result] = backend.run([Request(images(1)[0], Caption())])
    assert not isinstance(result, Exception), result
    assert server.stats.jobs_created == 2 and backend.last_stats.resubmits == 1


def test_a_failed_job_classed_permanent_is_reported_with_its_code(backend, server):
    server.reset_stats()
    server.inject("fail_job", times=1, code="content_policy", message="Flagged.", transient=False)
    [result] = backend.run([Request(images(1)[0], Caption())])
    assert isinstance(result, JobFailedError) and result.code == "content_policy" and not result.retryable
    assert "Flagged." in str(result) and server.stats.jobs_created == 1


def test_caption_on_a_photo_through_the_cli(server, tmp_path, capsys, monkeypatch):
    from molmo_rag.cli import main

    monkeypatch.setitem(BACKENDS, *REGISTRY_LINE)
    monkeypatch.setenv("ACME_API_KEY", "acme-key")
    monkeypatch.setenv("ACME_BASE_URL", server.base_url)
    photo("astronaut").save(tmp_path / "astronaut.jpg")
    code = main(["caption", str(tmp_path / "astronaut.jpg"), "--backend", "acme", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    [line] = [json.loads(text) for text in out.splitlines()]
    assert line["backend"] == "acme" and line["model"] == "acme/molmo2"
    assert isinstance(line["caption"], str) and line["caption"] and line["cost_usd"] == 0.001



def test_a_journaled_job_is_polled_not_paid_again_and_an_unknown_one_is_submitted_anew(backend, server, tmp_path):
    from molmo_rag.cache import ResultCache

    server.reset_stats()
    earlier = server.new_job("job", {"prompt": "earlier"}, "from the earlier run")
    with ResultCache(tmp_path / "cache") as cache:
        cache.add_pending("kept", "acme", earlier.id)
        cache.add_pending("lost", "acme", "0123abcd")
        kept, lost = backend.run([Request(item, Caption(), journal=cache.journal(key))
                                  for item, key in zip(images(2), ("kept", "lost"))])
        assert kept.fields["caption"] == "from the earlier run" and not isinstance(lost, Exception), lost
        assert backend.last_stats.resumed == 2 and backend.last_stats.forgotten == 1 and backend.last_stats.posts == 1
        assert server.stats.by_route["submit"] == 1  # only the one the server no longer knew
