from django.contrib import admin
from django.urls import path

from orders import views

urlpatterns = [
    path("healthz", views.healthz),
    path("admin/", admin.site.urls),
]
# edit
