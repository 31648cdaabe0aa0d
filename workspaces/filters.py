"""Filter pieces shared by the list endpoints."""

from __future__ import annotations

import django_filters
from django import forms


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
