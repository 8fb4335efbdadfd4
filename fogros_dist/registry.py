"""Providers by name, imported lazily so a cloud SDK loads only when its provider is used.

Built-in providers are listed here; third parties register an entry point in the
``fogros_dist.providers`` group (``name = "package.module:ProviderClass"``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from fogros_dist.errors import MissingDependency, UnknownProvider

if TYPE_CHECKING:
    from fogros_dist.providers.base import Provider

__all__ = ["ENTRY_POINT_GROUP", "get_provider", "provider_names"]

ENTRY_POINT_GROUP = "fogros_dist.providers"

# name -> "module:Class"; the module is imported only when the provider is asked for.
_BUILTIN: dict[str, str] = {
    "local": "fogros_dist.providers.local:LocalProvider",
    "ssh": "fogros_dist.providers.ssh:SSHProvider",
    "aws": "fogros_dist.providers.aws:AWSProvider",
}


def _third_party() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    """Every provider name that :func:`get_provider` accepts, sorted."""
    return sorted({**_third_party(), **_BUILTIN})


def get_provider(name: str) -> Provider:
    """Instantiate the provider registered as ``name``.

    Raises UnknownProvider (naming the known ones) or MissingDependency (with an install hint).
    """
    target = _BUILTIN.get(name) or _third_party().get(name)
    if target is None:
        msg = f"unknown provider {name!r}: use one of {', '.join(provider_names())}"
        raise UnknownProvider(msg)
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = err.name or module_name
        msg = f"provider {name!r} needs the Python package {missing!r}: pip install {missing}"
        raise MissingDependency(msg) from err
    provider_cls = getattr(module, class_name)
    provider: Provider = provider_cls()
    return provider
