from django.contrib import admin
from django.urls import path

from playground import api, library, pages

urlpatterns = [
    path("", pages.library, name="library"),
    path("p/<slug:slug>", pages.pattern_page, name="pattern"),
    path("t/<str:slug>", pages.topology_page, name="topology"),
    path("r/<str:run_id>", pages.run_page, name="run"),
    path("api/patterns", api.patterns_index),
    path("api/patterns/<slug:slug>", api.pattern_detail),
    path("api/runs", api.runs_create),
    path("api/runs/<str:run_id>", api.run_detail),
    path("api/runs/<str:run_id>/verify", api.run_verify),
    path("api/runs/<str:run_id>/events.jsonl", api.run_events_jsonl),
    path("api/runs/<str:run_id>/events.csv", api.run_events_csv),
    path("api/topologies", api.topologies_create),
    # Before <slug>: "validate" is not a slug a save can make (slugs are 22 characters).
    path("api/topologies/validate", api.topologies_validate),
    path("api/topologies/<str:slug>", api.topology_detail),
    path("partials/params", pages.params_form, name="params_form"),
    path("library/results", pages.library_results, name="library_results"),
    path("s/<int:pk>", pages.scenario_page, name="scenario"),
    path("api/scenarios/<int:pk>", library.scenario_document, name="scenario_document"),
    path("admin/", admin.site.urls),
]
