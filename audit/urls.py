from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.event_list, name="list"),
    path("export.csv", views.event_export, name="export"),
    path("verify/", views.chain_verify, name="verify"),
    path("scans/<int:pk>/", views.scan_history, name="scan_history"),
]
