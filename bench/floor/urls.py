from django.urls import re_path

from bench.floor.views import floor

urlpatterns = [re_path(r"^.*$", floor)]
