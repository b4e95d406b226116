"""`ClaimingWorker`: arq's Worker, claiming the jobs of one poll in one round trip and running
each without arq's two round trips of its own.

arq starts each due job with a WATCH / EXISTS / ZSCORE / MULTI-PSETEX-EXEC exchange: four
round trips a job, before the job has even read its own definition, and the Python client's
cost per round trip is what caps a worker (shared/notes/baselines.md). Here the job ids one
poll read are claimed by one script, atomically, with the same rule: a job is started if no
worker holds its in-progress key and its score in the queue is due; its in-progress key is
then set for arq's `in_progress_timeout_s`, as arq sets it, but holding the worker's id
instead of arq's `1`: a job whose worker's heartbeat is gone (SIGKILL, `workers.upkeep`) is
claimed again at once rather than after the key expires (arq only checks that the key
exists). The claim takes no more jobs than the worker has free slots, so `max_jobs` holds as
it does in arq.

arq's `run_job` then reads the job (its definition, its try counter) in a round trip of its
own, and `finish_job` ends it in another. The claim script does the first for each job it
claims (the same INCR and EXPIRE of arq's retry key, and the job's definition in its reply),
and `finish_job` sends arq's writes as one script through the worker's `ScriptSender`, with
the calls of the other jobs running (`workers.batching`). What a job run does in between is
arq's: its context, its timeout, `Retry`, a cancellation (the job stays queued, to run again)
and a failure (logged, the job finished), with arq's counters. Anything else (a job whose
definition is gone or unreadable, a function unknown, a cron job, a job keeping its result,
abortable jobs, the job hooks, a try past `max_tries`) goes to arq's own `run_job`.

`start_jobs`, `run_job` and `finish_job` are arq methods, not documented hooks:
tests/test_claim.py pins the behaviour this relies on, for arq upgrades.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import Function, Retry, RetryJob, Worker

from core import keys
from core.scripts import ScriptCall, ScriptSender, load_lua, reply_or_raise

JOB_END = "job_end"
"""The job context's key of its `JobEnd` (jobs run by `run_claimed` with a sender only)."""
SENDER = "script_sender"
"""The worker context's key of the `ScriptSender` its startup made (when not given `send`):
held there, not set on the worker by a startup closure, which would make a reference cycle
that keeps the worker and its context alive until the garbage collector finds them."""

arq_log = logging.getLogger("arq.worker")
"""arq's own logger: a job that fails is logged as arq logs it."""

RETRY_KEY_TTL_S = 88400
"""arq's run_job keeps a job's try counter this long (its own literal)."""


@dataclass
class JobEnd:
    """A claimed job's end as it finishes (arq's writes): a job may send `call` with its own
    last calls, in one round trip, and say so (`sent`); its worker then sends nothing more."""

    call: ScriptCall
    sent: bool = False


class ClaimingWorker(Worker):
    """An arq Worker whose `start_jobs` claims a poll's due jobs with one script, and whose
    jobs start from what the claim read and end through `send`."""

    def __init__(
        self,
        *args: Any,
        worker_id: str | None = None,
        send: ScriptSender | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id or uuid.uuid4().hex
        """Written in the in-progress key of each job it claims; its heartbeat
        (`keys.heartbeat`) says it lives, else another worker may claim the job at once."""
        self.send = send
        """How a job's end reaches Redis; None: the context's `SENDER`, if its startup put
        one there, else arq's own `finish_job`."""
        self._claim_script: Any = None
        self._finish_script: Any = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim due, free jobs of `job_ids`, in order, until the free slots are taken; run
        each claimed one as arq would (its slot given back when it ends)."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(load_lua(keys.Script.CLAIM))
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        claimed = await self._claim_script(
            keys=[self.queue_name],
            args=[
                timestamp_ms(),
                ttl_ms,
                in_progress_key_prefix,
                free,
                self.worker_id,
                retry_key_prefix,
                RETRY_KEY_TTL_S,
                job_key_prefix,
                *job_ids,
            ],
        )
        for n in range(0, len(claimed), 4):
            await self.sem.acquire()  # never waits: no more were claimed than slots are free
            self.job_counter += 1
            job_id = claimed[n].decode()
            score, tries, definition = int(float(claimed[n + 1])), claimed[n + 2], claimed[n + 3]
            task = self.loop.create_task(self.run_claimed(job_id, score, tries, definition))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def run_claimed(
        self, job_id: str, score: int, job_try: int, definition: bytes | None
    ) -> None:
        """arq's `run_job` for a job the claim read (`job_try`, `definition`)."""
        plain = self._plain(definition, job_try)
        if plain is None:
            await self.run_job(job_id, score)  # arq's own, for what is not plain
            return
        function, args, kwargs, enqueue_time_ms = plain
        ctx = {
            **self.ctx,
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_time_ms),
            "score": score,
        }
        end = None
        if self._sender() is not None:
            end = ctx[JOB_END] = JobEnd(self._finish_call(job_id, True, None))
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        finish, incr_score = True, None
        try:
            async with asyncio.timeout(timeout_s):
                await function.coroutine(ctx, *args, **kwargs)
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - as arq: every end of a job is handled
            if self.retry_jobs and isinstance(exc, Retry):
                finish = False
                incr_score = exc.defer_score
                if exc.defer_score:
                    incr_score = exc.defer_score + (timestamp_ms() - score)
                self.jobs_retried += 1
            elif self.retry_jobs and isinstance(exc, asyncio.CancelledError | RetryJob):
                finish = False  # stays queued: it runs again
                self.jobs_retried += 1
            else:
                arq_log.exception(
                    "%s:%s failed, %s: %s", job_id, function.name, exc.__class__.__name__, exc
                )
                self.jobs_failed += 1
        else:
            self.jobs_complete += 1
            if end is not None and end.sent:  # the job ended itself with its last calls
                return
        await asyncio.shield(self.finish_job(job_id, finish, None, None, False, incr_score, None))

    def _plain(
        self, definition: bytes | None, job_try: int
    ) -> tuple[Function, tuple[Any, ...], dict[str, Any], int] | None:
        """The job's function, args, kwargs and enqueue time if `run_claimed` may run it
        (see the module's docstring)."""
        if (
            definition is None
            or self.allow_abort_jobs
            or self.on_job_start
            or self.on_job_end
            or self.after_job_end
        ):
            return None
        try:
            name, args, kwargs, enqueue_try, enqueue_time_ms = deserialize_job_raw(
                definition, deserializer=self.job_deserializer
            )
        except SerializationError:
            return None
        function = self.functions.get(name)
        if not isinstance(function, Function):  # unknown, or a cron job
            return None
        keep_forever = (
            self.keep_result_forever
            if function.keep_result_forever is None
            else function.keep_result_forever
        )
        keep_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if keep_forever or keep_s or (enqueue_try and enqueue_try > job_try) or job_try > max_tries:
            return None
        return function, args, kwargs, enqueue_time_ms

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's writes at a job's end, as one script through `send` when the job keeps no
        result and its in-progress key goes (not a cron job); else arq's own."""
        send = self._sender()
        if send is None or result_data is not None or keep_in_progress is not None:
            await super().finish_job(
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
            )
            return
        call = self._finish_call(job_id, finish, incr_score)
        reply_or_raise((await send([call]))[0])

    def _sender(self) -> ScriptSender | None:
        sender: ScriptSender | None = self.send or self.ctx.get(SENDER)
        return sender

    def _finish_call(self, job_id: str, finish: bool, incr_score: int | None) -> ScriptCall:
        """arq's writes at the end of `job_id` as one script call (job_finish.lua)."""
        if self._finish_script is None:
            self._finish_script = self.pool.register_script(load_lua(keys.Script.JOB_FINISH))
        return ScriptCall(
            self._finish_script,
            [
                self.queue_name,
                abort_jobs_ss,
                in_progress_key_prefix + job_id,
                retry_key_prefix + job_id,
                job_key_prefix + job_id,
            ],
            [job_id, "1" if finish else "0", incr_score or ""],
        )
