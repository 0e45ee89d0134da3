"""The Django admin: the curated scenario library, and read-mostly views of what is stored.

Scenarios are validated with the API's schema (:func:`playground.models.validate_scenario`);
an error names the document's field, as the API does. Export and import move scenarios
between installations as a JSON file (:mod:`playground.scenarios`).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from patterns import catalog
from playground.models import Run, Scenario, Topology
from playground.scenarios import MAX_IMPORT_BYTES, ImportProblems, export_json, import_scenarios


class DocumentField(forms.JSONField):
    """A topology document typed as JSON: shown indented, a syntax error said precisely."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    code="invalid") from None
        return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False, indent=2)
        return super().prepare_value(value)


def _pattern_choices(current: str = "") -> list[tuple[str, str]]:
    choices = [("", "---------")] + [
        (slug, f"{p.NAME} ({catalog.CATEGORIES[p.CATEGORY]})")
        for slug, p in sorted(catalog.PATTERNS.items(), key=lambda kv: kv[1].NAME)]
    if current and current not in catalog.PATTERNS:
        choices.append((current, f"{current} (no longer registered)"))
    return choices


class ScenarioForm(forms.ModelForm):
    pattern = forms.ChoiceField(choices=(), help_text=Scenario._meta.get_field("pattern").help_text)
    document = DocumentField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 24, "class": "vLargeTextField",
                                     "style": "font-family: monospace; width: 95%"}),
        help_text="The topology document (JSON), as the API takes it. Leave it empty to "
                  "start from the pattern's canonical topology with its teaching fault.")

    class Meta:
        model = Scenario
        fields = ("pattern", "title", "description", "document", "featured", "order",
                  "published")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pattern"].choices = _pattern_choices(self.instance.pattern or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "document" in data and data["document"] in (None, ""):
            slug = data.get("pattern")
            if slug in catalog.PATTERNS:
                data["document"] = catalog.get(slug).canonical()
            else:
                self.add_error("document", "is required: paste a topology document, or pick "
                                           "a pattern and leave this empty")
        return data


class CategoryFilter(admin.SimpleListFilter):
    """The pattern's category, from the registry (a scenario stores only its pattern)."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        used = {p.CATEGORY for p in catalog.PATTERNS.values()}
        return [(key, name) for key, name in catalog.CATEGORIES.items() if key in used]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        slugs = [slug for slug, p in catalog.PATTERNS.items() if self.value() == p.CATEGORY]
        return queryset.filter(pattern__in=slugs)


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    form = ScenarioForm
    list_display = ("title", "pattern", "category_name", "featured", "published", "order",
                    "preview")
    list_editable = ("featured", "published", "order")
    list_filter = ("pattern", CategoryFilter, "featured", "published")
    search_fields = ("title", "description")
    ordering = ("order", "title")
    readonly_fields = ("preview", "created", "updated")
    actions = ("export_selected",)
    change_list_template = "admin/playground/scenario/change_list.html"
    fieldsets = (
        (None, {"fields": ("pattern", "title", "description", "document")}),
        ("In the library", {"fields": ("published", "featured", "order")}),
        ("Record", {"fields": ("preview", "created", "updated")}),
    )

    @admin.display(description="category")
    def category_name(self, obj: Scenario) -> str:
        return catalog.CATEGORIES.get(obj.category, "—")

    @admin.display(description="preview")
    def preview(self, obj: Scenario) -> str:
        if not obj.pk:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener" '
                           'data-preview="{}">Open in the playground</a>',
                           reverse("scenario", args=[obj.pk]), obj.pk)

    @admin.action(description="Export selected scenarios to JSON")
    def export_selected(self, request: HttpRequest, queryset: QuerySet[Scenario]) -> HttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(export_json(queryset.order_by("order", "title", "id")),
                                content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="scenarios-{stamp}.json"'
        return response

    def get_urls(self) -> list[URLPattern]:
        return [path("import/", self.admin_site.admin_view(self.import_view),
                     name="playground_scenario_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload an export file: every scenario is stored, or none and the problems shown."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        problems: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > MAX_IMPORT_BYTES:
                    raise ImportProblems([f"the file is larger than "
                                          f"{MAX_IMPORT_BYTES // 1024 // 1024} MB"])
                stored = import_scenarios(upload.read())
            except ImportProblems as exc:
                problems = exc.problems
            else:
                self.message_user(request, f"Imported {len(stored)} scenario"
                                           f"{'' if len(stored) == 1 else 's'}.",
                                  messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:playground_scenario_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Import scenarios", "form": form, "problems": problems,
                   "max_mb": MAX_IMPORT_BYTES // 1024 // 1024}
        return render(request, "admin/playground/scenario/import.html", context,
                      status=400 if problems else 200)


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A JSON file as “Export selected scenarios” makes: a "
                                     "list of scenario objects.")


class ReadMostly(admin.ModelAdmin):
    """Stored by the app, not by hand: admins look, filter and delete, never edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields] + list(self.readonly_fields)


@admin.register(Topology)
class TopologyAdmin(ReadMostly):
    list_display = ("slug", "title", "pattern", "created", "forked_from", "open")
    list_filter = ("pattern", "created")
    search_fields = ("slug", "title", "pattern")
    readonly_fields = ("open",)

    @admin.display(description="open")
    def open(self, obj: Topology) -> str:
        return format_html('<a href="{}" target="_blank" rel="noopener">/t/{}</a>',
                           reverse("topology", args=[obj.slug]), obj.slug)


@admin.register(Run)
class RunAdmin(ReadMostly):
    list_display = ("id", "pattern", "status", "mode", "seed", "created", "ended", "frames",
                    "open")
    list_filter = ("status", "mode", "pattern", "created")
    search_fields = ("id", "pattern", "task_id", "error")
    readonly_fields = ("open",)

    @admin.display(description="open")
    def open(self, obj: Run) -> str:
        return format_html('<a href="{}" target="_blank" rel="noopener">/r/{}</a>',
                           reverse("run", args=[obj.id]), obj.id)
