"""The AWS provider: EC2 instances (on-demand or spot) reached over SSH. boto3 loads only when used."""

from __future__ import annotations

from fogros_dist.providers.aws.provider import AWSProvider

__all__ = ["AWSProvider"]
