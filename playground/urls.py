from django.contrib import admin
from django.urls import path

from playground import api, pages

urlpatterns = [
    path("", pages.library, name="library"),
    path("p/<slug:slug>", pages.pattern_page, name="pattern"),
    path("t/<str:slug>", pages.topology_page, name="topology"),
    path("r/<str:run_id>", pages.run_page, name="run"),
    path("api/patterns", api.patterns_index),
    path("api/patterns/<slug:slug>", api.pattern_detail),
    path("api/runs", api.runs_create),
    path("api/runs/<str:run_id>", api.run_detail),
    path("api/topologies", api.topologies_create),
    path("api/topologies/<str:slug>", api.topology_detail),
    path("partials/params", pages.params_form, name="params_form"),
    path("admin/", admin.site.urls),
]
