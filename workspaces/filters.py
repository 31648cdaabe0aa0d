"""Filter pieces shared by the list endpoints."""

from __future__ import annotations

import django_filters
from django import forms
from django_filters.utils import translate_validation


class StrictBooleanFormField(forms.Field):
    widget = forms.TextInput

    def to_python(self, value):
        if value in (None, ""):
            return None
        lowered = str(value).strip().lower()
        if lowered in {"true", "1"}:
            return True
        if lowered in {"false", "0"}:
            return False
        raise forms.ValidationError("Must be true or false.")


class StrictBooleanFilter(django_filters.BooleanFilter):
    """`?pinned=true|false`; anything else is a 400 instead of being silently ignored."""

    field_class = StrictBooleanFormField


class FilterSet(django_filters.FilterSet):
    """django-filter's FilterSet with its form class built once per FilterSet class instead of once
    per request: `get_form_class` makes a new class (a type and every form field) each time, and the
    filters here never differ from one request to the next. Each form instance still copies its fields."""

    def get_form_class(self):
        cls = type(self)
        form_class = cls.__dict__.get("_form_class")
        if form_class is None:
            form_class = super().get_form_class()
            cls._form_class = form_class
        return form_class

    @classmethod
    def cleaned(cls, data) -> dict:
        """`data` validated as a filterset of this class validates it, with the 400 DjangoFilterBackend
        answers, for a caller that filters by itself: no filterset (nor copy of its filters) is built."""
        form_class = cls.__dict__.get("_form_class")
        if form_class is None:
            form_class = cls(queryset=cls._meta.model._default_manager.none()).get_form_class()
        form = form_class(data)
        if not form.is_valid():
            raise translate_validation(form.errors)
        return form.cleaned_data
