"""What is stored: shared topologies and runs (DESIGN §7)."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
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


# ---- the admin-curated scenario library ----------------------------------------------------

SUMMARY_CHARS = 160


def validate_scenario(pattern: str, document: Any) -> dict[str, Any]:
    """The scenario's document, validated with the API's schema and tied to its pattern.

    Returns the validated document (defaults filled in; ``pattern`` set to the scenario's
    when the document names none). Raises ``ValidationError`` keyed by model field, the
    message naming the document's bad field: ``nodes[1].params.workers: must be ≥ 1``.
    """
    # Imported here: the registry loads every pattern module, which the model layer needs
    # only when a scenario is checked.
    from patterns import catalog
    from patterns.topology import TopologyError, validate

    if pattern not in catalog.PATTERNS:
        raise ValidationError({"pattern": f"unknown pattern {pattern!r}; available: "
                                          f"{', '.join(sorted(catalog.PATTERNS))}"})
    if isinstance(document, dict) and not document.get("pattern"):
        document = {**document, "pattern": pattern}
    try:
        validated = validate(document)
    except TopologyError as exc:
        raise ValidationError({"document": str(exc)}) from None
    if validated.get("pattern") != pattern:
        raise ValidationError({"document": f"pattern: is {validated.get('pattern')!r} but "
                                           f"the scenario's pattern is {pattern!r}"})
    return validated


class Scenario(models.Model):
    """An admin-curated starting point: a pattern's topology with a fault worth studying.

    The library page lists the published ones by their pattern's category. ``full_clean``
    replaces ``document`` with its validated form (see :func:`validate_scenario`).
    """

    pattern = models.CharField(max_length=64, db_index=True,
                               help_text="The pattern this scenario teaches (its slug).")
    title = models.CharField(max_length=120)
    description = models.TextField(
        blank=True, help_text="Plain text. The first line is the card's summary; say what to "
                              "watch for.")
    document = models.JSONField(help_text="The topology document, as the API takes it.")
    featured = models.BooleanField(default=False, help_text="Shown first in its category.")
    order = models.IntegerField(default=0, help_text="Lower comes first.")
    published = models.BooleanField(default=False, db_index=True,
                                    help_text="Listed in the library for everyone.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("order", "title", "id")

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        # A blank pattern or a missing document is reported by clean_fields (or by the form
        # that failed to parse it): checking them again would say the same thing twice.
        if not self.pattern or self.document is None:
            return
        self.document = validate_scenario(self.pattern, self.document)

    @property
    def category(self) -> str:
        """The pattern's category key, or "" when the pattern is no longer registered."""
        from patterns import catalog

        pattern = catalog.PATTERNS.get(self.pattern)
        return pattern.CATEGORY if pattern else ""

    @property
    def summary(self) -> str:
        """The description's first line, shortened to fit a card."""
        line = next((ln.strip() for ln in self.description.splitlines() if ln.strip()), "")
        if len(line) > SUMMARY_CHARS:
            line = line[:SUMMARY_CHARS - 1].rstrip() + "…"
        return line

    def as_json(self) -> dict[str, Any]:
        """The export form: what :func:`playground.scenarios.parse_import` takes back."""
        return {"pattern": self.pattern, "title": self.title,
                "description": self.description, "document": self.document,
                "featured": self.featured, "order": self.order, "published": self.published}
