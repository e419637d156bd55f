"""The minimal contract every collected resource fulfils, so persistence can store any of them."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class ResourceMetadata:
    """What a reader shows for a resource, plus flat string facts for indexers.

    Validated on construction so a bad value fails where it was made, not later in a YAML dump.
    """

    display_name: str
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.display_name, str):
            raise TypeError(f"display_name must be a str, not {type(self.display_name).__name__}")
        if not self.display_name.strip():
            raise ValueError("display_name must not be empty")
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"extra must be a mapping, not {type(self.extra).__name__}")
        for key, value in self.extra.items():
            if not isinstance(key, str):
                raise TypeError(f"extra keys must be str, got {type(key).__name__} {key!r}")
            if not isinstance(value, str):
                raise TypeError(f"extra[{key!r}] must be a str, not {type(value).__name__}")
        # Freeze a private copy: the caller's dict may change after construction.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def as_dict(self) -> dict[str, object]:
        return {"display_name": self.display_name, "extra": dict(self.extra)}


class BaseResource(abc.ABC):
    """A unit of collected content with a stable identity (its hash) and a file name."""

    @abc.abstractmethod
    def get_hash(self) -> str:
        """A stable identifier, safe to use as a file name stem."""

    @abc.abstractmethod
    def get_filename(self) -> str:
        """The file name the content is stored under."""

    @abc.abstractmethod
    def get_content(self) -> str:
        """The text content."""

    def get_metadata(self) -> ResourceMetadata | None:
        """Optional metadata stored beside the content."""
        return None
