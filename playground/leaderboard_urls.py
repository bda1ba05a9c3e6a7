"""URLs of blind votes and the leaderboard, included under /playground/ next to playground/urls.py."""

from __future__ import annotations

from django.urls import path

from playground import leaderboard_views

urlpatterns = [
    path("leaderboard/", leaderboard_views.leaderboard, name="playground-leaderboard"),
    path("runs/<uuid:run_id>/vote/", leaderboard_views.vote, name="playground-vote"),
]
