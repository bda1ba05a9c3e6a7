from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from billing.dashboards import usage_views
from billing.dashboards import views as dashboard_views
from switchyard import views

admin.site.site_header = "Switchyard"
admin.site.site_title = "Switchyard admin"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", views.home, name="home"),
    # Pages link the icon under /static/; this is for clients that ask the root for it.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("keys/", include("billing.urls")),
    path("teams/", include("billing.dashboards.urls")),
    path("calls/<str:request_id>/", dashboard_views.call_record, name="call-record"),
    path("me/", usage_views.me, name="me"),
    path("me/usage.csv", usage_views.me_usage_csv, name="me-usage-csv"),
    path("me/calls/<str:request_id>/", usage_views.me_record, name="me-record"),
    path("playground/", include("playground.urls")),
    path("playground/", include("playground.leaderboard_urls")),
]
