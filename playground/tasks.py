"""Celery tasks: thin wrappers around playground.runs."""

from celery import shared_task

from playground import runs


@shared_task(bind=True, name="playground.simulate_run")
def simulate_run(self, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """Simulate a stored run and stream its frames (idempotent: ended runs are skipped)."""
    runs.execute(run_id, task_id=self.request.id or "")


@shared_task(name="playground.refill_stream")
def refill_stream(run_id: str) -> None:
    """Re-simulate an ended run whose stream expired, so it can be played again."""
    from playground import replays

    replays.refill(run_id)
