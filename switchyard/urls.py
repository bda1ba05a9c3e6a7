from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from switchyard import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("keys/", include("billing.urls")),
    path("playground/", include("playground.urls")),
    path("playground/", include("playground.leaderboard_urls")),
]
