"""`ClaimingWorker`: arq's Worker, claiming the jobs of one poll in one round trip.

arq starts each due job with a WATCH / EXISTS / ZSCORE / MULTI-PSETEX-EXEC exchange: four
round trips a job, before the job has even read its own definition, and the Python client's
cost per round trip is what caps a worker (shared/notes/baselines.md). Here the job ids one
poll read are claimed by one script, atomically, with the same rule: a job is started if no
worker holds its in-progress key and its score in the queue is due; its in-progress key is
then set for arq's `in_progress_timeout_s`, as arq sets it, but holding the worker's id
instead of arq's `1`: a job whose worker's heartbeat is gone (SIGKILL, `workers.upkeep`) is
claimed again at once rather than after the key expires (arq only checks that the key
exists). Everything else (running the job, retries, finishing it) is arq's own code, and the
claim takes no more jobs than the worker has free slots, so `max_jobs` holds as it does in
arq.

`start_jobs` is an arq method, not a documented hook: tests/test_claim.py pins the behaviour
this relies on, for arq upgrades.
"""

from __future__ import annotations

import uuid
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker

from core import keys
from core.scripts import load_lua


class ClaimingWorker(Worker):
    """An arq Worker whose `start_jobs` claims a poll's due jobs with one script."""

    def __init__(self, *args: Any, worker_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id or uuid.uuid4().hex
        """Written in the in-progress key of each job it claims; its heartbeat
        (`keys.heartbeat`) says it lives, else another worker may claim the job at once."""
        self._claim_script: Any = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim due, free jobs of `job_ids`, in order, until the free slots are taken; run
        each claimed one as arq would (`run_job`, the slot given back when it ends)."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(load_lua(keys.Script.CLAIM))
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        claimed = await self._claim_script(
            keys=[self.queue_name],
            args=[timestamp_ms(), ttl_ms, in_progress_key_prefix, free, self.worker_id, *job_ids],
        )
        for n in range(0, len(claimed), 2):
            await self.sem.acquire()  # never waits: no more were claimed than slots are free
            self.job_counter += 1
            job_id = claimed[n].decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(claimed[n + 1]))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
