from django.urls import path

from reports import views

app_name = "reports"
urlpatterns = [
    path("model/", views.model_page, name="model"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
