from __future__ import annotations

from django.urls import path

from billing.dashboards import views

urlpatterns = [
    path("", views.teams, name="billing-teams"),
    path("<slug:slug>/", views.team, name="billing-team"),
    path("<slug:slug>/charts/<slug:chart>/", views.team_chart, name="billing-team-chart"),
    path("<slug:slug>/records/<str:request_id>/", views.team_record, name="billing-team-record"),
]
