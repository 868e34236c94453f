from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from labeling import api, views

urlpatterns = [
    path("", views.project_list, name="project-list"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/import", views.project_import, name="project-import"),
    path("imports/<uuid:job_id>/", views.import_detail, name="import-detail"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/projects/", api.ProjectListApi.as_view(), name="api-project-list"),
    path("api/v1/projects/<slug:slug>/", api.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("api/v1/projects/<slug:slug>/imports", api.ImportCreateApi.as_view(), name="api-import-create"),
    path("api/v1/imports/<uuid:job_id>", api.ImportDetailApi.as_view(), name="api-import-detail"),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
