"""Which ROS domain a graph adapter joins."""

from __future__ import annotations

import os

from fogros_dist.errors import ConfigError

__all__ = ["MAX_DOMAIN_ID", "resolve_domain_id"]

# The highest id whose DDS ports fit in 16 bits with the standard RTPS port mapping.
MAX_DOMAIN_ID = 232


def resolve_domain_id(domain_id: int | None) -> int:
    """The ROS domain to join: ``domain_id``, else ``$ROS_DOMAIN_ID``, else 0.

    The environment is read when this is called, never at import.

    Raises:
        ConfigError: the id (given or from the environment) is not an integer in 0..232.
    """
    if domain_id is None:
        text = os.environ.get("ROS_DOMAIN_ID", "").strip()
        if not text:
            return 0
        try:
            domain_id = int(text)
        except ValueError:
            msg = f"ROS_DOMAIN_ID={text!r} is not an integer: set it to 0..{MAX_DOMAIN_ID} or unset it"
            raise ConfigError(msg) from None
    if isinstance(domain_id, bool) or not 0 <= domain_id <= MAX_DOMAIN_ID:
        msg = f"ROS domain id {domain_id} is out of range: use 0..{MAX_DOMAIN_ID}"
        raise ConfigError(msg)
    return domain_id
