from __future__ import annotations

from django.urls import path

from billing.dashboards import calculator_views, savings_views, usage_views, views

urlpatterns = [
    path("", views.teams, name="billing-teams"),
    path("<slug:slug>/", views.team, name="billing-team"),
    path("<slug:slug>/charts/<slug:chart>/", views.team_chart, name="billing-team-chart"),
    path("<slug:slug>/usage/", usage_views.team_usage, name="billing-team-usage"),
    path("<slug:slug>/savings/", savings_views.team_savings, name="billing-team-savings"),
    path("<slug:slug>/usage.csv", usage_views.team_usage_csv, name="billing-team-usage-csv"),
    path("<slug:slug>/calculator/", calculator_views.team_calculator, name="billing-team-calculator"),
    path("<slug:slug>/records/<str:request_id>/", views.team_record, name="billing-team-record"),
]
