from __future__ import annotations

from django.urls import path

from playground import views

app_name = "playground"

urlpatterns = [
    path("", views.index, name="index"),
    path("estimate/", views.estimate, name="estimate"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/events/", views.run_events, name="run-events"),
    path("runs/<uuid:run_id>/stop/", views.run_stop, name="run-stop"),
]
