from django.urls import path

from knowledge import views

document_list = views.DocumentViewSet.as_view({"get": "list", "post": "create"})
document_detail = views.DocumentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
brand = views.BrandProfileViewSet.as_view({"get": "retrieve", "put": "update", "patch": "partial_update"})
brand_versions = views.BrandProfileVersionViewSet.as_view({"get": "list"})

urlpatterns = [
    path("documents", document_list, name="document-list"),
    path("documents/<str:pk>", document_detail, name="document-detail"),
    path("brand", brand, name="brand-profile"),
    path("brand/versions", brand_versions, name="brand-profile-versions"),
]
