"""What the AWS provider made for one machine, found again by its tags, released, and checked.

Everything ``launch`` creates is tagged by the request that creates it (key pair, security group,
instance, its volume, its spot request), and the key files on the robot are named after the
deployment and machine. So whatever moment a `up` was killed at, :func:`find_leftovers` finds
what it left: the provider's ``reclaim`` (no Host recorded), ``terminate`` (a Host recorded) and
``remaining`` (after ``terminate``) are all this module, asked differently.

A deployment's fleet group (machines with ``fleet_group``) belongs to no one machine: the machine
whose instance is the deployment's last is answerable for it. Each machine's release tries to
delete it once its own instance is terminated (:func:`release_fleet_group`), and it is among a
machine's leftovers only while no other instance of the deployment is still there to do that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fogros_dist.errors import ProvisionError
from fogros_dist.providers.aws.config import key_paths
from fogros_dist.providers.aws.ec2 import (
    NOT_GONE_STATES,
    RESOURCE_KINDS,
    TAG_OWNER,
    Ec2,
    Tagged,
    fleet_group_name,
    tag_filters,
)

__all__ = [
    "HOLDING_STATES",
    "Leftovers",
    "find_fleet_group",
    "find_leftovers",
    "key_files",
    "release_fleet_group",
    "release_resources",
]

# The states of an instance that keeps its fleet group for good. A shutting-down one is on its way
# out: deleting the group waits for it (DependencyViolation), so it does not keep the group.
HOLDING_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True, kw_only=True)
class Leftovers:
    """What exists of one machine of one deployment, in AWS and on the robot."""

    region: str
    resources: tuple[Tagged, ...]
    key_files: tuple[Path, ...]

    def describe(self) -> tuple[str, ...]:
        """One line each, e.g. ``instance i-0abc (t3.micro, running) in us-west-2``."""
        return (
            *(f"{resource.describe()} in {self.region}" for resource in self.resources),
            *(f"key file {path}" for path in self.key_files),
        )


def key_files(*, deployment: str, machine: str) -> tuple[Path, ...]:
    """The machine's key files on the robot that exist: its private key, its known_hosts file and
    the temporary file of a key write that was interrupted."""
    key_file, known_hosts = key_paths(deployment=deployment, machine=machine)
    partial = sorted(key_file.parent.glob(f"{key_file.stem}.tmp*")) if key_file.parent.is_dir() else []
    return tuple(path for path in (key_file, known_hosts, *partial) if path.exists())


def find_leftovers(
    ec2: Ec2,
    *,
    deployment: str,
    machine: str,
    owner: str = "",
    instance_id: str = "",
    named: str = "",
    stage: str,
) -> Leftovers:
    """Everything tagged for ``deployment``/``machine`` (and ``owner``, unless '') that still
    exists in ``ec2``'s region, the instance ``instance_id`` if it is not terminated, the security
    group and key pair called ``named`` (these two whatever their tags say, for a recorded machine
    whose tags were changed by hand), the deployment's fleet group when this machine answers for
    it (no instance of the deployment but its own is left, see :func:`release_fleet_group`), and
    the machine's key files.

    A volume being deleted counts as gone: nothing more can be done about it, and it ends by itself.

    Raises:
        ProvisionError: EC2 could not be asked.
    """
    found = [
        resource
        for resource in ec2.tagged(
            tag_filters(deployment=deployment, machine=machine, owner=owner), stage=stage
        )
        if not (resource.kind == "volume" and resource.state == "deleting")
    ]
    if instance_id and not any(r.kind == "instance" and r.resource_id == instance_id for r in found):
        # By filter, not by id: an id EC2 no longer knows is no error, just nothing left.
        found += ec2.tagged(
            [{"Name": "instance-id", "Values": [instance_id]}], stage=stage, kinds=("instance",)
        )
    if named:
        by_name = [
            *ec2.tagged([{"Name": "group-name", "Values": [named]}], stage=stage, kinds=("security group",)),
            *ec2.tagged([{"Name": "key-name", "Values": [named]}], stage=stage, kinds=("key pair",)),
        ]
        known = {(r.kind, r.resource_id) for r in found}
        found += [r for r in by_name if (r.kind, r.resource_id) not in known]
    group = find_fleet_group(ec2, deployment=deployment, owner=owner, stage=stage)
    if group is not None and not any(r.resource_id == group.resource_id for r in found):
        own = {r.resource_id for r in found if r.kind == "instance"} | ({instance_id} - {""})
        others = [
            i
            for i in ec2.find_instances(deployment=deployment, states=NOT_GONE_STATES, stage=stage)
            if i.instance_id not in own
        ]
        if not others:
            found.append(group)
    return Leftovers(
        region=ec2.region,
        resources=tuple(found),
        key_files=key_files(deployment=deployment, machine=machine),
    )


def find_fleet_group(ec2: Ec2, *, deployment: str, owner: str = "", stage: str) -> Tagged | None:
    """``deployment``'s fleet group in ``ec2``'s region (carrying owner tag ``owner``, unless ''),
    by its name; None if there is none."""
    groups = ec2.tagged(
        [{"Name": "group-name", "Values": [fleet_group_name(deployment)]}],
        stage=stage,
        kinds=("security group",),
    )
    return next((g for g in groups if not owner or g.tag(TAG_OWNER) == owner), None)


def release_fleet_group(ec2: Ec2, *, deployment: str, owner: str = "", stage: str) -> list[str]:
    """Delete ``deployment``'s fleet group unless an instance of the deployment still holds it
    (:data:`HOLDING_STATES`); called by each machine's release once its own instance is
    terminated, so the last machine of a teardown, parallel or not, deletes it.

    The delete waits (bounded) while shutting-down instances still use it; NotFound means another
    machine deleted it first. Returns the failure's one line, if any (empty: gone or left to another).
    """
    group = find_fleet_group(ec2, deployment=deployment, owner=owner, stage=stage)
    if group is None:
        return []
    try:
        if ec2.find_instances(deployment=deployment, states=HOLDING_STATES, stage=stage):
            return []
        ec2.delete_security_group(group.resource_id, stage=stage)
    except ProvisionError as err:
        return [str(err)]
    return []


def release_resources(
    ec2: Ec2,
    resources: Sequence[Tagged],
    *,
    stage: str,
    on_removed: Callable[[Tagged], None] | None = None,
) -> list[str]:
    """Release ``resources`` (as :meth:`Ec2.tagged` lists them), in the order that lets each go:
    spot requests, instances (waiting until terminated), security groups, key pairs, then the
    volumes still there once their instances are gone.

    Keeps going past a failure; returns each failure's one-line message (empty: all released).
    """
    errors: list[str] = []
    removed = on_removed or (lambda _resource: None)
    by_kind = {kind: [r for r in resources if r.kind == kind] for kind in RESOURCE_KINDS}

    def attempt(action: Callable[[], None], done: Sequence[Tagged]) -> None:
        try:
            action()
        except ProvisionError as err:
            errors.append(str(err))
            return
        for resource in done:
            removed(resource)

    def ids(kind: str) -> list[str]:
        return [r.resource_id for r in by_kind[kind]]

    attempt(
        functools.partial(ec2.cancel_spot_requests, ids("spot request"), stage=stage), by_kind["spot request"]
    )
    attempt(functools.partial(ec2.terminate, ids("instance"), stage=stage), by_kind["instance"])
    for group in by_kind["security group"]:
        attempt(functools.partial(ec2.delete_security_group, group.resource_id, stage=stage), [group])
    for key in by_kind["key pair"]:
        attempt(functools.partial(ec2.delete_key_pair, key.resource_id, stage=stage), [key])
    volumes = by_kind["volume"]
    try:
        # A root volume goes with its instance (DeleteOnTermination); only loose ones need deleting.
        still = _volume_states(ec2, volumes, stage=stage) if volumes else {}
    except ProvisionError as err:
        errors.append(str(err))
        return errors
    for volume in volumes:
        if still.get(volume.resource_id, "deleting") == "deleting":
            removed(volume)
        else:
            attempt(functools.partial(ec2.delete_volume, volume.resource_id, stage=stage), [volume])
    return errors


def _volume_states(ec2: Ec2, volumes: Sequence[Tagged], *, stage: str) -> dict[str, str]:
    """volume id -> state, for those of ``volumes`` that still exist."""
    found = ec2.tagged(
        [{"Name": "volume-id", "Values": [v.resource_id for v in volumes]}], stage=stage, kinds=("volume",)
    )
    return {r.resource_id: r.state for r in found}
