from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("scans/<int:pk>/", views.review_create, name="create"),
]
