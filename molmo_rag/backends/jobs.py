"""The one template for hosted APIs that submit a job and poll it: :class:`SubmitAndPoll`.

A submit-and-poll backend fills in narrow hooks, each one fact of its API:

* what to POST and where (:meth:`~SubmitAndPoll.submit_url`, :meth:`~SubmitAndPoll.submit_body`),
* where the job id and status are in an answer (:meth:`~SubmitAndPoll.parse_job`,
  :meth:`~SubmitAndPoll.job_id`),
* where a job is polled (:meth:`~SubmitAndPoll.poll_url`),
* what a status means (:meth:`~SubmitAndPoll.is_done`, :meth:`~SubmitAndPoll.succeeded`),
* how a failure is classified (:meth:`~SubmitAndPoll.failure`: a :class:`JobFailedError`
  whose ``resubmit`` says whether a new job may succeed, ``fatal`` whether the account is
  the cause),
* where the output is (:meth:`~SubmitAndPoll.output`: the text, or an http(s) URL to it).

The template runs the job the same way for every such API: submit once per attempt
(never re-sent once the server may have accepted it: :class:`~.rest.RestClient`), journal
the job id the moment it is known, poll it (adaptive schedule per :meth:`poll_key`), fetch
an output URL, resubmit a failure only when the backend classed it as transient, and
resume a journaled job of an earlier run instead of paying for it again. HTTP, retries,
error translation and redaction are the HTTP client's (:mod:`molmo_rag.backends.http`).
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import (
    AuthenticationError,
    BackendError,
    InsufficientBalanceError,
    JobFailedError,
    JobNotFoundError,
    RateLimitError,
)
from .base import Answer, Request
from .rest import RestBackend, RestClient, is_http_url

__all__ = ["SubmitAndPoll"]

log = logging.getLogger(__name__)

J = TypeVar("J")
"""How a backend reads a job: its own type (a dataclass, or the decoded JSON dict)."""


class SubmitAndPoll(RestBackend, Generic[J]):
    """Base of backends whose API submits a job and is polled for it. Subclasses fill the
    hooks below; :meth:`call` and :meth:`resume` are the template."""

    job_noun: ClassVar[str] = "job"
    """What the API calls a job, in messages ("prediction", "task")."""
    server_noun: ClassVar[str] = "server"
    """What answers, in messages ("the server", "the gateway")."""

    # -- the hooks -----------------------------------------------------------------------
    @abstractmethod
    def submit_url(self, request: Request) -> str:
        """Where the job for ``request`` is POSTed."""

    @abstractmethod
    async def submit_body(self, request: Request, client: RestClient) -> Any:
        """The JSON body that creates the job (media inlined or uploaded here: made once,
        whatever the number of submissions)."""

    @abstractmethod
    def parse_job(self, body: Any, job_id: str | None) -> J:
        """The job in a decoded answer: to the submission (``job_id`` None) or to a poll of
        ``job_id``. A shape that cannot be read raises ``ResponseFormatError`` (read inside
        the exchange: a poll is fetched again, a submission is not re-sent)."""

    @abstractmethod
    def job_id(self, job: J) -> str: ...

    @abstractmethod
    def poll_url(self, job_id: str) -> str: ...

    @abstractmethod
    def is_done(self, job: J) -> bool:
        """Whether the job reached a terminal status (success or not)."""

    @abstractmethod
    def succeeded(self, job: J) -> bool:
        """Whether a terminal job has an answer."""

    @abstractmethod
    def failure(self, job: J) -> JobFailedError:
        """The error for a job that ended without an answer (its message redacted here)."""

    @abstractmethod
    def output(self, job: J) -> str:
        """A succeeded job's text, or an http(s) URL to it (then fetched); raises
        ``MalformedAnswerError`` when it holds none (the job was paid for)."""

    def answer(self, text: str, job: J, request: Request) -> Answer:
        """The answer to ``request`` from a finished job's text."""
        return Answer(text=text, cost_usd=self.estimate_cost(request), model=self.model, meta={"job_id": self.job_id(job)})

    def poll_key(self, request: Request) -> str:
        """Jobs with the same key take alike long (the adaptive poll schedule learns per key)."""
        return self.job_noun

    def run_time(self, job: J) -> float | None:
        """How long a finished job ran by the server's account (s), when it says."""
        return None

    def submit_timeout(self, body: Any) -> float | None:
        """A read timeout of its own for the submission (e.g. an API that waits for the result)."""
        return None

    # -- the template --------------------------------------------------------------------
    async def call(self, request: Request, client: RestClient) -> Answer:
        body = await self.submit_body(request, client)

        async def one_job() -> J:
            job = await client.post_json(
                self.submit_url(request), body, timeout=self.submit_timeout(body), parse=lambda b: self.parse_job(b, None)
            )
            self.journal_submitted(request, self.job_id(job))  # accepted: from now on the job is paid for
            return await self._settle(job, request, client)

        return await self._answer_from(await client.run_job(one_job), request, client)

    async def resume(self, job_id: str, request: Request, client: RestClient) -> Answer:
        """Poll a job an earlier run submitted for ``request`` and answer from it."""
        try:
            job = await self._fetch(job_id, client)
        except BackendError as exc:
            if self.job_unknown(exc):
                raise JobNotFoundError(
                    f"{self.name}: {self.job_noun} {job_id} is unknown to the {self.server_noun}: {exc}",
                    backend=self.name,
                    code="job_not_found",
                    status=exc.status,
                ) from exc
            raise
        return await self._answer_from(await self._settle(job, request, client), request, client)

    # -- the journal: jobs survive the run ----------------------------------------------
    def journal_submitted(self, request: Request, job_id: str) -> None:
        """Record that a submission for ``request`` was accepted as job ``job_id``, the
        moment it is known (a run killed from now on leaves the job to the next run)."""
        if request.journal is None:
            return
        try:
            request.journal.submitted(self.name, job_id)
        except Exception as exc:  # noqa: BLE001 - a journal that cannot be written must not lose the answer
            log.warning("%s: could not journal job %s: %s", self.name, job_id, exc)

    def job_unknown(self, error: BackendError) -> bool:
        """Whether an error answer to a poll says the job does not exist (any more)."""
        if isinstance(error, (AuthenticationError, InsufficientBalanceError, RateLimitError)):
            return False
        if error.status in (404, 410) or (error.code or "") in ("task_not_found", "prediction_not_found", "not_found"):
            return True
        text = str(error).lower()
        return error.status is not None and 400 <= error.status < 500 and any(
            word in text for word in ("not found", "expired", "does not exist", "no such")
        )

    async def _answer(self, request: Request, client: RestClient) -> Answer:
        """A journaled job of an earlier run first (polled, not submitted again), else
        :meth:`call`; the journal entry is dropped when its job failed or is unknown (a
        job that is still running when this run ends stays for the next one)."""
        journal = request.journal
        pending = None
        if journal is not None:
            try:
                pending = journal.pending(self.name)
            except Exception as exc:  # noqa: BLE001 - an unreadable journal: submit as usual
                log.warning("%s: could not read the pending-jobs journal: %s", self.name, exc)
        if pending is not None:
            client.stats.resumed += 1
            log.info("%s: polling job %s of an earlier run instead of submitting again", self.name, pending.job_id)
            try:
                return await self.resume(pending.job_id, request, client)
            except JobFailedError as exc:
                self._journal_finished(request, pending.job_id)
                if exc.fatal:
                    client.account_error(exc)
                if not exc.resubmit or client.stopped is not None:
                    raise
                client.stats.resubmits += 1
                log.info("%s: job %s failed, submitting again: %s", self.name, pending.job_id, self.redact(str(exc)))
                await asyncio.sleep(client.resubmit_wait(1))
            except JobNotFoundError:
                client.stats.forgotten += 1
                log.info("%s: job %s of an earlier run is unknown to the server; submitting anew", self.name, pending.job_id)
                self._journal_finished(request, pending.job_id)
            # any other error: the job may still run, so it stays in the journal
        try:
            return await self.call(request, client)
        except JobFailedError as exc:
            # the job is over without an answer: nothing left to resume
            self._journal_finished(request, exc.job_id)
            raise

    def _journal_finished(self, request: Request, job_id: str | None) -> None:
        if request.journal is None:
            return
        try:
            request.journal.finished(job_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: could not update the pending-jobs journal: %s", self.name, exc)

    async def _settle(self, job: J, request: Request, client: RestClient) -> J:
        """Poll until the job ends; a succeeded job is returned, any other end raises
        :meth:`failure`'s :class:`JobFailedError`."""
        if not self.is_done(job):
            job_id = self.job_id(job)
            job = await client.poll(
                lambda: self._fetch(job_id, client),
                self.is_done,
                key=self.poll_key(request),
                job=job_id,
                run_time=self.run_time,
            )
        if self.succeeded(job):
            return job
        raise self.failure(job)

    async def _fetch(self, job_id: str, client: RestClient) -> J:
        return await client.get_json(self.poll_url(job_id), parse=lambda body: self.parse_job(body, job_id))

    async def _answer_from(self, job: J, request: Request, client: RestClient) -> Answer:
        text = self.output(job)
        if is_http_url(text):
            text = await client.get_text(text, what=f"fetching the output of {self.job_noun} {self.job_id(job)}")
        return self.answer(text, job, request)
