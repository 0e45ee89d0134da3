"""What is stored: shared topologies and runs (DESIGN §7)."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import models
from django.utils import timezone

# 16 random bytes = 128 bits, base64url: 22 characters that cannot be enumerated.
SLUG_BYTES = 16


def new_slug() -> str:
    return secrets.token_urlsafe(SLUG_BYTES)


class Topology(models.Model):
    """A saved document. Saving again makes a new one: a shared link never changes."""

    slug = models.CharField(max_length=32, unique=True, default=new_slug, editable=False)
    title = models.CharField(max_length=80, blank=True)
    pattern = models.CharField(max_length=64, blank=True)
    document = models.JSONField()
    forked_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="forks")
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return self.title or self.slug


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        FINISHED = "finished"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Mode(models.TextChoices):
        LIVE = "live"
        FAST = "fast"

    ENDED = (Status.FINISHED, Status.FAILED, Status.CANCELLED)

    id = models.CharField(primary_key=True, max_length=32, default=new_slug, editable=False)
    topology = models.ForeignKey(Topology, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="runs")
    pattern = models.CharField(max_length=64, blank=True)
    document = models.JSONField(help_text="The validated document as run.")
    seed = models.BigIntegerField()
    speed = models.FloatField(default=1.0, help_text="Sim-seconds per wall-second.")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.LIVE)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    started = models.DateTimeField(null=True, blank=True)
    ended = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(null=True, blank=True)
    interventions = models.JSONField(default=list, blank=True,
                                     help_text="Live controls and faults, with their frame.")
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker started it.")
    frames = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def ended_for_good(self) -> bool:
        return self.status in self.ENDED

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "pattern": self.pattern, "seed": self.seed,
            "speed": self.speed, "mode": self.mode, "frames": self.frames,
            "attempts": self.attempts,
            "created": self.created.isoformat(),
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "summary": self.summary, "error": self.error or None,
            "interventions": self.interventions,
            "ws_url": f"/ws/runs/{self.id}/", "url": f"/r/{self.id}",
        }
