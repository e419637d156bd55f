from __future__ import annotations

import pytest

from data_manager.collectors.resource_base import BaseResource, ResourceMetadata


def test_metadata_keeps_display_name_and_a_frozen_copy_of_extra() -> None:
    extra = {"project": "ops"}
    meta = ResourceMetadata(display_name="PROJ-7: Login fails", extra=extra)
    extra["project"] = "changed"
    assert meta.extra == {"project": "ops"}
    with pytest.raises(TypeError):
        meta.extra["x"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        meta.display_name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["", "   ", "\n"])
def test_empty_display_name_is_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="display_name"):
        ResourceMetadata(display_name=name, extra={})


@pytest.mark.parametrize("extra", [{1: "a"}, {"a": 1}, {"a": None}, {("t",): "x"}])
def test_non_string_extra_is_a_type_error(extra: dict) -> None:
    with pytest.raises(TypeError):
        ResourceMetadata(display_name="x", extra=extra)


def test_base_resource_is_abstract_and_metadata_defaults_to_none() -> None:
    with pytest.raises(TypeError):
        BaseResource()  # type: ignore[abstract]

    class Minimal(BaseResource):
        def get_hash(self) -> str:
            return "h"

        def get_filename(self) -> str:
            return "h.txt"

        def get_content(self) -> str:
            return "c"

    assert Minimal().get_metadata() is None
