"""EC2 for one machine: session and credentials, checks, key pair, security group, instance, teardown.

Every AWS error is translated here, at the boundary, into one line that names the stage, the
machine, the bad value and the fix (``raise ProvisionError(msg) from err``). boto3 is imported
only when an :class:`Ec2` is made, so importing this module needs no AWS SDK.

Everything fogros_dist creates carries the tags in :data:`TAG_KEYS`, set by the very request that
creates it (TagSpecifications: a process killed between two calls leaves nothing untagged), so
`down`, the provider's ``reclaim`` and `down --all --region R` find it again with no local state
(:meth:`Ec2.tagged`). Waits go through :mod:`~fogros_dist.providers.aws.waits` (cancellable).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogros_dist.errors import ConfigError, MissingDependency, ProvisionError
from fogros_dist.providers.aws.waits import Wait

__all__ = [
    "FLEET_MACHINE",
    "LIVE_STATES",
    "NOT_GONE_STATES",
    "RESOURCE_KINDS",
    "TAG_CREATED",
    "TAG_DEPLOYMENT",
    "TAG_HOSTKEY",
    "TAG_IMAGE_OF",
    "TAG_KEYS",
    "TAG_MACHINE",
    "TAG_OWNER",
    "TAG_TTL",
    "Ec2",
    "ImageInfo",
    "Instance",
    "InstanceTypeInfo",
    "Tagged",
    "check_region",
    "client_token",
    "fleet_group_name",
    "resource_name",
    "tag_filters",
    "translate_error",
]

TAG_DEPLOYMENT = "fogros_dist:deployment"
TAG_MACHINE = "fogros_dist:machine"
TAG_OWNER = "fogros_dist:owner"
TAG_CREATED = "fogros_dist:created"
TAG_TTL = "fogros_dist:ttl"
# The machine's SSH host public key: a reused instance is verified like a new one.
TAG_HOSTKEY = "fogros_dist:hostkey"
TAG_KEYS = (TAG_DEPLOYMENT, TAG_MACHINE, TAG_OWNER, TAG_CREATED, TAG_TTL)
# On images made by `fogros-dist image`: "deployment/machine" they were made from.
TAG_IMAGE_OF = "fogros_dist:image-of"

LIVE_STATES = ("pending", "running")
# Every state but "terminated": what `down --all` still has to end.
NOT_GONE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
WAIT_TIMEOUT_S = 600.0
# What fogros_dist creates in a region, in the order it is released in: nothing may launch again,
# instances hold their security group and volumes, and a volume is free once its instance is gone.
RESOURCE_KINDS = ("spot request", "instance", "security group", "key pair", "volume")

Progress = Callable[[str, str], None]


def resource_name(*, deployment: str, machine: str) -> str:
    """The name of a machine's key pair and security group (and its Name tag)."""
    return f"fogros_dist-{deployment}-{machine}"


# The machine tag (and name suffix) of a deployment's fleet group. An aws machine's name starts
# with a letter or digit (config.py), so no machine's own group or key pair can be called this.
FLEET_MACHINE = "_fleet"


def fleet_group_name(deployment: str) -> str:
    """The name of ``deployment``'s fleet group, one per region: the security group whose only
    inbound rule admits every protocol from its own members (machines with ``fleet_group``)."""
    return resource_name(deployment=deployment, machine=FLEET_MACHINE)


def client_token(*, deployment: str, machine: str, created_at: float) -> str:
    """RunInstances' idempotency token for one machine of one deployment record.

    The same for every retry within that record's life (a retried request returns the instance
    the first one launched instead of launching a second); a new record of the same name gets a
    new one (EC2 keeps a token bound to its instance, terminated or not, for a while). With
    ``created_at`` unknown (0) it is random: no idempotency, but never an old instance.
    """
    if not created_at:
        return f"fogros-{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{deployment}\0{machine}\0{created_at!r}".encode()).hexdigest()
    return f"fogros-{digest[:40]}"  # EC2 allows 64 ASCII characters


@dataclass(frozen=True, kw_only=True)
class InstanceTypeInfo:
    """What an instance type offers, from DescribeInstanceTypes."""

    name: str
    vcpus: int
    memory_mib: int
    # (manufacturer and model, count, memory per GPU in MiB)
    gpus: tuple[tuple[str, int, int], ...]
    architectures: tuple[str, ...]

    def describe(self) -> str:
        """E.g. ``g5.xlarge: 4 vCPU, 16 GiB, 1x NVIDIA A10G (22 GiB)``."""
        parts = [f"{self.vcpus} vCPU", f"{self.memory_mib / 1024:g} GiB"]
        parts += [f"{count}x {model} ({mem / 1024:.0f} GiB)" for model, count, mem in self.gpus]
        if not self.gpus:
            parts.append("no GPU")
        return f"{self.name}: {', '.join(parts)}"


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    """An AMI, as far as launching it is concerned."""

    image_id: str
    name: str
    owner: str
    architecture: str
    root_device: str
    root_size_gb: int
    created: str


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One EC2 instance as DescribeInstances reports it."""

    instance_id: str
    state: str
    instance_type: str
    public_ip: str
    private_ip: str
    spot: bool
    launch_time: float
    tags: tuple[tuple[str, str], ...]
    # The ids of its security groups, as EC2 lists them.
    security_groups: tuple[str, ...] = ()

    def tag(self, key: str) -> str:
        """The value of tag ``key``, or ''."""
        return dict(self.tags).get(key, "")


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """One fogros_dist-tagged resource: an instance, spot request, security group, key pair or volume."""

    kind: str
    resource_id: str
    # The security group's name, the instance's type, the volume's size ("" where none).
    name: str = ""
    state: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def tag(self, key: str) -> str:
        """The value of tag ``key``, or ''."""
        return dict(self.tags).get(key, "")

    def describe(self) -> str:
        """E.g. ``instance i-0abc (t3.micro, running)``, ``security group sg-1 (fogros_dist-d-m)``."""
        details = [part for part in (self.name if self.name != self.resource_id else "", self.state) if part]
        return f"{self.kind} {self.resource_id}" + (f" ({', '.join(details)})" if details else "")


def tag_filters(*, deployment: str = "", machine: str = "", owner: str = "") -> list[dict[str, Any]]:
    """EC2 filters for fogros_dist resources of ``deployment``/``machine``/``owner`` ('' = any)."""
    filters = [{"Name": "tag-key", "Values": [TAG_DEPLOYMENT]}]
    for key, value in ((TAG_DEPLOYMENT, deployment), (TAG_MACHINE, machine), (TAG_OWNER, owner)):
        if value:
            filters.append({"Name": f"tag:{key}", "Values": [value]})
    return filters


def _boto() -> tuple[Any, Any]:
    try:
        import boto3
        import botocore.exceptions
    except ImportError as err:
        msg = "provider 'aws' needs the Python package 'boto3': pip install boto3"
        raise MissingDependency(msg) from err
    return boto3, botocore.exceptions


@functools.cache
def _data_loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


def _botocore_session() -> Any:
    """A fresh botocore session (credentials and config are read anew) sharing one data loader,
    so EC2's large service model is parsed once per process, not once per client."""
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _data_loader())
    return session


@functools.cache
def _known_regions() -> list[str]:
    import botocore.session

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return sorted(regions)


@functools.cache
def _known_instance_types() -> list[str]:
    import botocore.session

    shape = botocore.session.get_session().get_service_model("ec2").shape_for("InstanceType")
    return list(shape.enum)


def check_region(region: str, *, where: str) -> None:
    """Reject a region that botocore does not know (offline: botocore's endpoint data).

    Raises:
        ConfigError: naming the region and the closest known ones.
    """
    _boto()
    known = _known_regions()
    if region in known:
        return
    close = difflib.get_close_matches(region, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    msg = (
        f"{where}: region {region!r} is not an AWS region: {hint}"
        f"(list them with 'aws ec2 describe-regions'; a region newer than this boto3 needs a newer boto3)"
    )
    raise ConfigError(msg)


def translate_error(
    *, code: str, message: str, operation: str, stage: str, machine: str, region: str, instance_type: str = ""
) -> str:
    """One line for an EC2 error code: what went wrong, at which stage, on which machine, the fix.

    A pure function, so the capacity and quota translations are tested without AWS producing them.
    """
    where = f"aws machine {machine!r}, stage {stage}"
    family = instance_type.split(".", maxsplit=1)[0] if instance_type else "this"
    if code in ("InvalidInstanceType", "InvalidInstanceType.NotFound") or (
        code == "InvalidParameterValue" and "instance type" in message.lower()
    ):
        close = difflib.get_close_matches(instance_type, _known_instance_types(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return (
            f"{where}: instance type {instance_type!r} does not exist in {region}: {hint}"
            f"(list them with 'aws ec2 describe-instance-types --region {region}')"
        )
    if code == "InsufficientInstanceCapacity":
        return (
            f"{where}: AWS has no {instance_type} capacity in {region} right now: retry later, "
            f"or use another region or instance type (spot capacity differs from on-demand)"
        )
    if code == "VcpuLimitExceeded":
        return (
            f"{where}: your vCPU quota for {family} instances in {region} is too low for {instance_type}: "
            f"request an increase in the Service Quotas console (EC2, 'Running On-Demand' or 'All Spot' "
            f"instance requests for that family), or pick a smaller instance type"
        )
    if code == "MaxSpotInstanceCountExceeded":
        return (
            f"{where}: the account's spot instance limit in {region} is reached: set spot = false, end other "
            f"spot instances, or request a higher 'All Spot Instance Requests' quota in Service Quotas"
        )
    if code == "InstanceLimitExceeded":
        return (
            f"{where}: the account's instance limit for {instance_type} in {region} is reached: end other "
            f"instances or request a higher quota in Service Quotas"
        )
    if code == "SpotMaxPriceTooLow":
        return f"{where}: the spot price of {instance_type} in {region} is above the limit: set spot = false"
    if code == "Unsupported":
        return (
            f"{where}: {instance_type} (or this request) is not supported in {region} ({message}): "
            f"pick another region or instance type"
        )
    if code.startswith(("InvalidAMIID", "InvalidAMIName")):
        return (
            f"{where}: {message.rstrip('.')} in {region}: AMI ids differ per region; use the id from "
            f"'aws ec2 describe-images --region {region}', or option ami_name"
        )
    if code == "OptInRequired":
        return (
            f"{where}: region {region} is not enabled for this account: "
            f"enable it in the AWS console's account settings"
        )
    if code in (
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "RequestExpired",
        "ExpiredToken",
    ):
        return (
            f"{where}: AWS refused {operation} ({code}): check the credentials and their permissions "
            f"('aws sts get-caller-identity'; 'aws configure' or AWS_PROFILE selects them)"
        )
    return (
        f"{where}: {operation} failed ({code}: {message}): fix it in the AWS console, or retry with --debug"
    )


class Ec2:
    """An EC2 client for one region and one machine, translating every error to one line.

    Args:
        region: AWS region; "" takes the profile's (or AWS_DEFAULT_REGION).
        profile: credentials profile; "" uses AWS_PROFILE or the default chain.
        endpoint_url: EC2 endpoint (moto in tests); "" uses AWS_ENDPOINT_URL or AWS itself.
        machine: the machine name errors are reported for.
        stage: the stage errors while connecting are reported for.

    Raises:
        MissingDependency: boto3 is not installed.
        ConfigError: unknown profile or region, or no region configured.
        ProvisionError: no credentials.
    """

    def __init__(
        self,
        *,
        region: str = "",
        profile: str = "",
        endpoint_url: str = "",
        machine: str = "",
        stage: str = "requesting",
    ) -> None:
        boto3, exceptions = _boto()
        self._errors = exceptions
        self.machine = machine
        where = f"aws machine {machine!r}, stage {stage}" if machine else f"aws, stage {stage}"
        try:
            session = boto3.Session(
                profile_name=profile or None, region_name=region or None, botocore_session=_botocore_session()
            )
            # Reading the region or the credentials reads the profile: an unknown one fails here.
            self.region: str = session.region_name or ""
            credentials = session.get_credentials()
        except exceptions.ProfileNotFound as err:
            available = ", ".join(boto3.Session().available_profiles) or "none"
            msg = (
                f"{where}: AWS profile {profile or os.environ.get('AWS_PROFILE', '')!r} does not exist "
                f"(known: {available}): create it with 'aws configure --profile NAME', or set option "
                f"profile / AWS_PROFILE to a known one"
            )
            raise ConfigError(msg) from err
        if not self.region:
            msg = (
                f"{where}: no AWS region is set: set machine option region (e.g. 'us-west-2'), "
                f"AWS_DEFAULT_REGION, or 'aws configure set region us-west-2'"
            )
            raise ConfigError(msg)
        check_region(self.region, where=where)
        self.profile = profile or session.profile_name or ""
        if credentials is None:
            named = f"profile {profile!r}" if profile else "the default credential chain"
            msg = (
                f"{where}: no AWS credentials found ({named}): run 'aws configure' "
                f"(or 'aws configure --profile NAME' and set AWS_PROFILE=NAME)"
            )
            raise ProvisionError(msg)
        from botocore.config import Config

        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")
        self.client: Any = session.client(
            "ec2",
            endpoint_url=self.endpoint_url or None,
            config=Config(
                retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60
            ),
        )

    # -- calls -------------------------------------------------------------------------------------

    def call(self, stage: str, operation: str, *, instance_type: str = "", **kwargs: Any) -> dict[str, Any]:
        """Call EC2 ``operation``; any failure becomes a one-line ProvisionError for ``stage``."""
        where = f"aws machine {self.machine!r}, stage {stage}"
        try:
            result: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except self._errors.ClientError as err:
            error = err.response.get("Error", {})
            msg = translate_error(
                code=str(error.get("Code", "")),
                message=str(error.get("Message", "")),
                operation=operation,
                stage=stage,
                machine=self.machine,
                region=self.region,
                instance_type=instance_type,
            )
            raise ProvisionError(msg) from err
        except (self._errors.NoCredentialsError, self._errors.PartialCredentialsError) as err:
            msg = (
                f"{where}: AWS credentials are missing or incomplete ({err}): "
                f"run 'aws configure' or set AWS_PROFILE"
            )
            raise ProvisionError(msg) from err
        except self._errors.EndpointConnectionError as err:
            msg = f"{where}: cannot reach the EC2 API ({err}): check the network, the region and endpoint_url"
            raise ProvisionError(msg) from err
        except self._errors.BotoCoreError as err:
            msg = f"{where}: {operation} failed ({err}): retry, or run with --debug"
            raise ProvisionError(msg) from err
        return result

    def _pages(self, stage: str, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.call(stage, operation, **kwargs, **({"NextToken": token} if token else {}))
            items += page.get(key, [])
            token = page.get("NextToken", "")
            if not token:
                return items

    # -- checks ------------------------------------------------------------------------------------

    def instance_type(self, name: str, *, stage: str = "requesting") -> InstanceTypeInfo:
        """Describe ``name`` in this region; unknown types fail with close names."""
        data = self.call(stage, "describe_instance_types", instance_type=name, InstanceTypes=[name])
        found = data.get("InstanceTypes", [])
        if not found:
            msg = translate_error(
                code="InvalidInstanceType",
                message="",
                operation="describe_instance_types",
                stage=stage,
                machine=self.machine,
                region=self.region,
                instance_type=name,
            )
            raise ProvisionError(msg)
        info = found[0]
        gpus = tuple(
            (
                f"{gpu.get('Manufacturer', '')} {gpu.get('Name', '')}".strip(),
                int(gpu.get("Count", 0)),
                int(gpu.get("MemoryInfo", {}).get("SizeInMiB", 0)),
            )
            for gpu in info.get("GpuInfo", {}).get("Gpus", [])
        )
        return InstanceTypeInfo(
            name=name,
            vcpus=int(info.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
            memory_mib=int(info.get("MemoryInfo", {}).get("SizeInMiB", 0)),
            gpus=gpus,
            architectures=tuple(info.get("ProcessorInfo", {}).get("SupportedArchitectures", ("x86_64",))),
        )

    def image_by_id(self, image_id: str, *, stage: str = "requesting") -> ImageInfo:
        """Describe AMI ``image_id`` in this region."""
        images = self.call(stage, "describe_images", ImageIds=[image_id]).get("Images", [])
        if not images:
            msg = (
                f"aws machine {self.machine!r}, stage {stage}: AMI {image_id!r} does not exist in "
                f"{self.region}: AMI ids differ per region; use the id from 'aws ec2 describe-images "
                f"--region {self.region}', or option ami_name"
            )
            raise ProvisionError(msg)
        return _image(images[0])

    def newest_image(
        self,
        pattern: str = "*",
        *,
        owner: str,
        architecture: str = "",
        tags: dict[str, str] | None = None,
        stage: str = "requesting",
    ) -> ImageInfo | None:
        """The newest available AMI (by CreationDate) of ``owner`` whose name matches ``pattern``
        ('*' wildcards) and that carries ``tags``; None if there is none."""
        filters = [
            {"Name": "name", "Values": [pattern]},
            {"Name": "state", "Values": ["available"]},
        ]
        if architecture:
            filters.append({"Name": "architecture", "Values": [architecture]})
        filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in (tags or {}).items()]
        images = self.call(stage, "describe_images", Owners=[owner], Filters=filters).get("Images", [])
        if not images:
            return None
        newest = max(
            images, key=lambda image: (str(image.get("CreationDate", "")), str(image.get("Name", "")))
        )
        return _image(newest)

    def image_by_name(
        self, pattern: str, *, owner: str, architecture: str = "", stage: str = "requesting"
    ) -> ImageInfo:
        """The newest available AMI (by CreationDate) whose name matches ``pattern`` ('*' wildcards)."""
        image = self.newest_image(pattern, owner=owner, architecture=architecture, stage=stage)
        if image is None:
            arch = f" for {architecture}" if architecture else ""
            close = self._close_image_names(pattern, owner, stage)
            msg = (
                f"aws machine {self.machine!r}, stage {stage}: no available AMI named {pattern!r}{arch} "
                f"owned by {owner!r} in {self.region}{close}: check the name ('*' matches anything) "
                f"and ami_owner, or set ami to an AMI id"
            )
            raise ProvisionError(msg)
        return image

    def _close_image_names(self, pattern: str, owner: str, stage: str) -> str:
        if owner != "self":
            # Public owners (Canonical, Amazon) have thousands of images: no listing just for a hint.
            return ""
        names = [
            str(image.get("Name", ""))
            for image in self.call(stage, "describe_images", Owners=["self"]).get("Images", [])
        ]
        close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
        return f" (close: {', '.join(close)})" if close else ""

    # -- key pair ----------------------------------------------------------------------------------

    def key_pair_exists(self, name: str, *, stage: str = "requesting") -> bool:
        """Whether a key pair called ``name`` exists in this region."""
        found = self.call(stage, "describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}])
        return bool(found.get("KeyPairs"))

    def create_key_pair(
        self, name: str, *, tags: dict[str, str], key_file: Path, stage: str = "requesting"
    ) -> None:
        """Create key pair ``name`` and store its private key in ``key_file`` (0600, never printed)."""
        created = self.call(
            stage,
            "create_key_pair",
            KeyName=name,
            KeyType="ed25519",
            KeyFormat="pem",
            TagSpecifications=[_tag_spec("key-pair", tags)],
        )
        _write_private(key_file, str(created["KeyMaterial"]))

    def delete_key_pair(self, name: str, *, stage: str = "terminating") -> None:
        """Delete key pair ``name`` (no error if it is already gone)."""
        self.call(stage, "delete_key_pair", KeyName=name)

    # -- security group ----------------------------------------------------------------------------

    def default_vpc(self, *, stage: str = "requesting") -> str:
        """The region's default VPC id; a one-line fix if the account has none."""
        vpcs = self.call(stage, "describe_vpcs", Filters=[{"Name": "is-default", "Values": ["true"]}]).get(
            "Vpcs", []
        )
        if not vpcs:
            msg = (
                f"aws machine {self.machine!r}, stage {stage}: region {self.region} has no default VPC: "
                f"create one with 'aws ec2 create-default-vpc --region {self.region}'"
            )
            raise ProvisionError(msg)
        return str(vpcs[0]["VpcId"])

    def ensure_security_group(
        self,
        name: str,
        *,
        tags: dict[str, str],
        cidrs: Sequence[str],
        ports: Sequence[int],
        udp_ports: Sequence[int] = (),
        stage: str = "requesting",
    ) -> str:
        """Create (or reconcile) security group ``name``: TCP ``ports`` and UDP ``udp_ports`` from
        ``cidrs`` only.

        An existing group's inbound rules are made exactly these (the robot's address may have
        changed since the last `up`, a mesh's port with the deployment): any other is revoked.
        Outbound stays AWS's default (all), for installs. Returns the group id.
        """
        vpc = self.default_vpc(stage=stage)
        groups = self.call(
            stage,
            "describe_security_groups",
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
        ).get("SecurityGroups", [])
        if groups:
            group_id = str(groups[0]["GroupId"])
            have = _rules(groups[0].get("IpPermissions", []))
        else:
            group_id = str(
                self.call(
                    stage,
                    "create_security_group",
                    GroupName=name,
                    Description="fogros_dist: SSH and the bridge port, from the robot only",
                    VpcId=vpc,
                    TagSpecifications=[_tag_spec("security-group", tags)],
                )["GroupId"]
            )
            have = set()
        want = {("tcp", port, port, cidr) for port in ports for cidr in cidrs}
        want |= {("udp", port, port, cidr) for port in udp_ports for cidr in cidrs}
        if have - want:
            self.call(
                stage,
                "revoke_security_group_ingress",
                GroupId=group_id,
                IpPermissions=_permissions(have - want, describe=False),
            )
        if want - have:
            self.call(
                stage,
                "authorize_security_group_ingress",
                GroupId=group_id,
                IpPermissions=_permissions(want - have),
            )
        return group_id

    def ensure_fleet_group(self, name: str, *, tags: dict[str, str], stage: str = "requesting") -> str:
        """Create (or reconcile) the deployment's fleet group ``name`` in the default VPC: its only
        inbound rule is every protocol from members of the group itself; no address or other
        group reaches its members through it.

        Any other inbound rule found (someone added 0.0.0.0/0) is revoked. Another machine of the
        deployment creating or reconciling it at the same moment is no error. Outbound stays
        AWS's default (all). Returns the group id.
        """
        vpc = self.default_vpc(stage=stage)
        group = self._group_in(name, vpc, stage=stage)
        if group is None:
            created = self._call_unless(
                {"InvalidGroup.Duplicate"},
                stage,
                "create_security_group",
                GroupName=name,
                Description="fogros_dist: the deployment's machines reach each other; nothing else does",
                VpcId=vpc,
                TagSpecifications=[_tag_spec("security-group", tags)],
            )
            # Duplicate: another machine of the deployment made it just now.
            group = {"GroupId": created["GroupId"]} if created else self._group_in(name, vpc, stage=stage)
            if group is None:
                msg = (
                    f"aws machine {self.machine!r}, stage {stage}: creating security group {name} failed "
                    f"as a duplicate, yet EC2 does not list it: retry 'up'"
                )
                raise ProvisionError(msg)
        group_id = str(group["GroupId"])
        permissions = group.get("IpPermissions", [])
        stray = _stray_permissions(permissions, group_id)
        if stray:
            # NotFound: another machine revoked it first.
            self._call_unless(
                {"InvalidPermission.NotFound"},
                stage,
                "revoke_security_group_ingress",
                GroupId=group_id,
                IpPermissions=stray,
            )
        if not _admits_itself(permissions, group_id):
            self._call_unless(
                {"InvalidPermission.Duplicate"},
                stage,
                "authorize_security_group_ingress",
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "-1",
                        "UserIdGroupPairs": [{"GroupId": group_id, "Description": "fogros_dist fleet"}],
                    }
                ],
            )
        return group_id

    def _group_in(self, name: str, vpc: str, *, stage: str) -> dict[str, Any] | None:
        groups = self.call(
            stage,
            "describe_security_groups",
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
        ).get("SecurityGroups", [])
        return dict(groups[0]) if groups else None

    def _call_unless(
        self, codes: Collection[str], stage: str, operation: str, **kwargs: Any
    ) -> dict[str, Any]:
        """:meth:`call`, but an EC2 error whose code is in ``codes`` returns {} instead of raising."""
        try:
            return self.call(stage, operation, **kwargs)
        except ProvisionError as err:
            cause = err.__cause__
            if (
                isinstance(cause, self._errors.ClientError)
                and cause.response.get("Error", {}).get("Code", "") in codes
            ):
                return {}
            raise

    def set_instance_groups(
        self, instance_id: str, group_ids: Sequence[str], *, stage: str = "requesting"
    ) -> None:
        """Make ``group_ids`` the instance's security groups (it keeps running)."""
        self.call(stage, "modify_instance_attribute", InstanceId=instance_id, Groups=list(group_ids))

    def security_group_id(self, name: str, *, stage: str = "terminating") -> str:
        """The id of security group ``name`` in any VPC of the region, or ''."""
        groups = self.call(
            stage, "describe_security_groups", Filters=[{"Name": "group-name", "Values": [name]}]
        ).get("SecurityGroups", [])
        return str(groups[0]["GroupId"]) if groups else ""

    def delete_security_group(
        self, group_id: str, *, stage: str = "terminating", timeout: float = 300.0
    ) -> None:
        """Delete a security group, waiting out DependencyViolation while instances detach."""
        wait = Wait(machine=self.machine, what=f"security group {group_id} to be free", timeout_s=timeout)
        for _ in wait.attempts():
            try:
                self.client.delete_security_group(GroupId=group_id)
            except self._errors.ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code == "InvalidGroup.NotFound":
                    return
                if code == "DependencyViolation":
                    continue
                self.call(stage, "delete_security_group", GroupId=group_id)  # re-raise, translated
            return
        msg = (
            f"aws machine {self.machine!r}, stage {stage}: security group {group_id} is still in use after "
            f"{timeout:.0f} s: delete it with 'aws ec2 delete-security-group --region {self.region} "
            f"--group-id {group_id}' once its instances are gone"
        )
        raise ProvisionError(msg)

    # -- instances ---------------------------------------------------------------------------------

    def find_instances(
        self,
        *,
        deployment: str = "",
        machine: str = "",
        states: Sequence[str] = LIVE_STATES,
        stage: str = "requesting",
    ) -> list[Instance]:
        """Instances tagged for ``deployment``/``machine`` (any fogros_dist instance if both are '')."""
        filters = [
            {"Name": "instance-state-name", "Values": list(states)},
            *tag_filters(deployment=deployment, machine=machine),
        ]
        reservations = self._pages(stage, "describe_instances", "Reservations", Filters=filters)
        found = [_instance(item) for reservation in reservations for item in reservation.get("Instances", [])]
        return sorted(found, key=lambda instance: instance.launch_time)

    def describe_instance(self, instance_id: str, *, stage: str) -> Instance:
        """The current state of one instance."""
        reservations = self.call(stage, "describe_instances", InstanceIds=[instance_id]).get(
            "Reservations", []
        )
        items = [item for reservation in reservations for item in reservation.get("Instances", [])]
        if not items:
            msg = (
                f"aws machine {self.machine!r}, stage {stage}: instance {instance_id} has disappeared: "
                f"run 'up' again"
            )
            raise ProvisionError(msg)
        return _instance(items[0])

    def run_instance(
        self,
        *,
        image: ImageInfo,
        instance_type: str,
        key_name: str,
        group_ids: Sequence[str],
        user_data: str,
        disk_gb: int,
        spot: bool,
        tags: dict[str, str],
        token: str,
        stage: str = "requesting",
    ) -> Instance:
        """Launch one instance that terminates itself when it powers off (the dead-man switch).

        ``token`` (:func:`client_token`) makes the request idempotent: botocore's own retries of a
        request whose answer was lost, and any later retry with the same token, return the instance
        the first launched. The instance, its volume and its spot request are tagged by the same
        request, so no moment exists in which one of them is untagged.
        """
        if disk_gb < image.root_size_gb:
            msg = (
                f"aws machine {self.machine!r}, stage {stage}: disk_gb {disk_gb} is smaller than the "
                f"{image.root_size_gb} GiB image {image.image_id}: set disk_gb >= {image.root_size_gb}"
            )
            raise ProvisionError(msg)
        resource_tags = [_tag_spec("instance", tags), _tag_spec("volume", tags)]
        kwargs: dict[str, Any] = {}
        if spot:
            resource_tags.append(_tag_spec("spot-instances-request", tags))
            kwargs["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        reply = self.call(
            stage,
            "run_instances",
            instance_type=instance_type,
            ImageId=image.image_id,
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            SecurityGroupIds=list(group_ids),
            UserData=user_data,
            InstanceInitiatedShutdownBehavior="terminate",
            BlockDeviceMappings=[
                {
                    "DeviceName": image.root_device,
                    # DeleteOnTermination: a terminated machine must leave no volume billing behind.
                    "Ebs": {"VolumeSize": disk_gb, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ],
            TagSpecifications=resource_tags,
            MetadataOptions={"HttpTokens": "required"},
            ClientToken=token,
            **kwargs,
        )
        return _instance(reply["Instances"][0])

    def wait_state(
        self,
        instance_id: str,
        *,
        want: str,
        stage: str,
        timeout: float = WAIT_TIMEOUT_S,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> Instance:
        """Poll until the instance is in state ``want``, showing each wait as stage ``waiting``.

        Raises:
            Cancelled: ``cancel`` was set (noticed within a second).
            ProvisionError: it went elsewhere, or was still not there after ``timeout`` seconds.
        """
        seen = ""
        wait = Wait(
            machine=self.machine,
            what=f"instance {instance_id} to be {want}",
            timeout_s=timeout,
            cancel=cancel,
            progress=progress,
        )
        for _ in wait.attempts():
            instance = self.describe_instance(instance_id, stage=stage)
            seen = instance.state
            wait.status(seen)
            if instance.state == want:
                return instance
            if want != "terminated" and instance.state in ("shutting-down", "terminated", "stopped"):
                msg = (
                    f"aws machine {self.machine!r}, stage {stage}: instance {instance_id} went to "
                    f"{instance.state} instead of {want} (spot interruption, or the image failed to boot): "
                    f"see 'aws ec2 get-console-output --region {self.region} --instance-id {instance_id}'"
                )
                raise ProvisionError(msg)
        msg = (
            f"aws machine {self.machine!r}, stage {stage}: instance {instance_id} is still {seen} after "
            f"{timeout:.0f} s: check it in the AWS console, then run 'up' again (it is reused) or 'down'"
        )
        raise ProvisionError(msg)

    def terminate(
        self, instance_ids: Sequence[str], *, stage: str = "terminating", timeout: float = WAIT_TIMEOUT_S
    ) -> None:
        """Terminate the instances and wait until each is terminated."""
        if not instance_ids:
            return
        self.call(stage, "terminate_instances", InstanceIds=list(instance_ids))
        for instance_id in instance_ids:
            self.wait_state(instance_id, want="terminated", stage=stage, timeout=timeout)

    def create_image(
        self,
        instance_id: str,
        *,
        name: str,
        tags: dict[str, str],
        reboot: bool = False,
        stage: str = "imaging",
        timeout: float = 3600.0,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Make an AMI of a running instance, wait until it is available, return its id.

        Without ``reboot`` the instance keeps running (its nodes too); AWS then cannot promise a
        consistent file system for files being written at that moment.
        """
        image_id = str(
            self.call(
                stage,
                "create_image",
                InstanceId=instance_id,
                Name=name,
                Description=f"fogros_dist image of {tags.get(TAG_IMAGE_OF, '')}",
                NoReboot=not reboot,
                TagSpecifications=[_tag_spec("image", tags)],
            )["ImageId"]
        )
        state = ""
        wait = Wait(
            machine=self.machine,
            what=f"image {image_id} to be available",
            timeout_s=timeout,
            cancel=cancel,
            progress=progress,
            longest_s=15.0,
        )
        for _ in wait.attempts():
            images = self.call(stage, "describe_images", ImageIds=[image_id]).get("Images", [])
            state = str(images[0].get("State", "")) if images else "missing"
            wait.status(state)
            if state == "available":
                # Its snapshots are billed too: tag them, so they are found by the same tags.
                snapshots = [
                    str(m["Ebs"]["SnapshotId"])
                    for m in images[0].get("BlockDeviceMappings", [])
                    if m.get("Ebs", {}).get("SnapshotId")
                ]
                if snapshots:
                    self.call(
                        stage, "create_tags", Resources=snapshots, Tags=_tag_spec("snapshot", tags)["Tags"]
                    )
                return image_id
            if state in ("failed", "invalid", "deregistered", "missing"):
                msg = (
                    f"aws machine {self.machine!r}, stage {stage}: image {image_id} ({name}) is {state}: "
                    f"see the AWS console"
                )
                raise ProvisionError(msg)
        msg = (
            f"aws machine {self.machine!r}, stage {stage}: image {image_id} ({name}) is still {state} after "
            f"{timeout:.0f} s: it keeps going; check with 'aws ec2 describe-images --image-ids {image_id}'"
        )
        raise ProvisionError(msg)

    # -- everything tagged -------------------------------------------------------------------------

    def tagged(
        self, filters: Sequence[dict[str, Any]], *, stage: str, kinds: Collection[str] = RESOURCE_KINDS
    ) -> list[Tagged]:
        """Every resource of ``kinds`` matching ``filters`` (see :func:`tag_filters`) that still
        exists or still bills: open or active spot requests, instances not yet terminated,
        security groups, key pairs and volumes."""
        found: list[Tagged] = []
        if "spot request" in kinds:
            found += self._spot_requests(filters, stage=stage)
        if "instance" in kinds:
            found += self._instances(filters, stage=stage)
        if "security group" in kinds:
            groups = self.call(stage, "describe_security_groups", Filters=list(filters)).get(
                "SecurityGroups", []
            )
            found += [
                Tagged(
                    kind="security group",
                    resource_id=str(g["GroupId"]),
                    name=str(g.get("GroupName", "")),
                    tags=_tags_of(g),
                )
                for g in groups
            ]
        if "key pair" in kinds:
            keys = self.call(stage, "describe_key_pairs", Filters=list(filters)).get("KeyPairs", [])
            found += [Tagged(kind="key pair", resource_id=str(k["KeyName"]), tags=_tags_of(k)) for k in keys]
        if "volume" in kinds:
            volumes = self._pages(stage, "describe_volumes", "Volumes", Filters=list(filters))
            found += [
                Tagged(
                    kind="volume",
                    resource_id=str(v["VolumeId"]),
                    name=f"{v.get('Size', '?')} GiB",
                    state=str(v.get("State", "")),
                    tags=_tags_of(v),
                )
                for v in volumes
            ]
        return found

    def _spot_requests(self, filters: Sequence[dict[str, Any]], *, stage: str) -> list[Tagged]:
        requests = self.call(
            stage,
            "describe_spot_instance_requests",
            Filters=[*filters, {"Name": "state", "Values": ["open", "active"]}],
        ).get("SpotInstanceRequests", [])
        return [
            Tagged(
                kind="spot request",
                resource_id=str(r["SpotInstanceRequestId"]),
                state=str(r.get("State", "")),
                tags=_tags_of(r),
            )
            for r in requests
        ]

    def _instances(self, filters: Sequence[dict[str, Any]], *, stage: str) -> list[Tagged]:
        reservations = self._pages(
            stage,
            "describe_instances",
            "Reservations",
            Filters=[*filters, {"Name": "instance-state-name", "Values": list(NOT_GONE_STATES)}],
        )
        instances = sorted(
            (_instance(i) for r in reservations for i in r.get("Instances", [])), key=lambda i: i.launch_time
        )
        return [
            Tagged(
                kind="instance", resource_id=i.instance_id, name=i.instance_type, state=i.state, tags=i.tags
            )
            for i in instances
        ]

    def cancel_spot_requests(self, request_ids: Sequence[str], *, stage: str = "terminating") -> None:
        """Cancel spot requests so that none launches an instance again."""
        if request_ids:
            self.call(stage, "cancel_spot_instance_requests", SpotInstanceRequestIds=list(request_ids))

    def delete_volume(self, volume_id: str, *, stage: str = "terminating") -> None:
        """Delete a volume (no error if it is already gone)."""
        try:
            self.client.delete_volume(VolumeId=volume_id)
        except self._errors.ClientError as err:
            if err.response.get("Error", {}).get("Code", "") == "InvalidVolume.NotFound":
                return
            self.call(stage, "delete_volume", VolumeId=volume_id)  # re-raise, translated


# -- helpers ---------------------------------------------------------------------------------------


def _tags_of(data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(t["Key"]), str(t["Value"])) for t in data.get("Tags", [])))


def _tag_spec(resource_type: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}


def _rules(permissions: Sequence[dict[str, Any]]) -> set[tuple[str, int, int, str]]:
    """Inbound rules as (protocol, from port, to port, CIDR); a range added by hand stays one rule."""
    rules: set[tuple[str, int, int, str]] = set()
    for permission in permissions:
        protocol = str(permission.get("IpProtocol", ""))
        low, high = int(permission.get("FromPort", -1)), int(permission.get("ToPort", -1))
        ranges = [r["CidrIp"] for r in permission.get("IpRanges", [])]
        ranges += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
        rules.update((protocol, low, high, str(cidr)) for cidr in ranges)
    return rules


def _admits_itself(permissions: Sequence[dict[str, Any]], group_id: str) -> bool:
    """Whether the rules hold the fleet group's own: every protocol from ``group_id`` itself."""
    return any(
        str(p.get("IpProtocol", "")) == "-1"
        and any(pair.get("GroupId") == group_id for pair in p.get("UserIdGroupPairs", []))
        for p in permissions
    )


def _stray_permissions(permissions: Sequence[dict[str, Any]], group_id: str) -> list[dict[str, Any]]:
    """Every inbound rule of the fleet group ``group_id`` but its own (every protocol from itself),
    as revoke_security_group_ingress takes them: addresses, prefix lists, other groups, or
    itself on some ports only."""
    stray = []
    for permission in permissions:
        protocol = str(permission.get("IpProtocol", ""))
        entry: dict[str, Any] = {"IpProtocol": protocol}
        if protocol != "-1":
            entry.update(
                FromPort=int(permission.get("FromPort", -1)), ToPort=int(permission.get("ToPort", -1))
            )
        pairs = [
            {key: pair[key] for key in ("GroupId", "UserId") if pair.get(key)}
            for pair in permission.get("UserIdGroupPairs", [])
            if not (protocol == "-1" and pair.get("GroupId") == group_id)
        ]
        parts = {
            "IpRanges": [{"CidrIp": r["CidrIp"]} for r in permission.get("IpRanges", [])],
            "Ipv6Ranges": [{"CidrIpv6": r["CidrIpv6"]} for r in permission.get("Ipv6Ranges", [])],
            "PrefixListIds": [
                {"PrefixListId": r["PrefixListId"]} for r in permission.get("PrefixListIds", [])
            ],
            "UserIdGroupPairs": pairs,
        }
        if any(parts.values()):
            entry.update({key: value for key, value in parts.items() if value})
            stray.append(entry)
    return stray


def _permissions(rules: set[tuple[str, int, int, str]], *, describe: bool = True) -> list[dict[str, Any]]:
    permissions = []
    for protocol, low, high, cidr in sorted(rules):
        entry: dict[str, Any] = {"IpProtocol": protocol, "FromPort": low, "ToPort": high}
        ip_range: dict[str, str] = {"CidrIpv6" if ":" in cidr else "CidrIp": cidr}
        if describe:
            ip_range["Description"] = "fogros_dist robot"
        entry["Ipv6Ranges" if ":" in cidr else "IpRanges"] = [ip_range]
        permissions.append(entry)
    return permissions


def _image(data: dict[str, Any]) -> ImageInfo:
    root = str(data.get("RootDeviceName", "/dev/sda1"))
    size = 0
    for mapping in data.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == root:
            size = int(mapping.get("Ebs", {}).get("VolumeSize", 0))
    return ImageInfo(
        image_id=str(data["ImageId"]),
        name=str(data.get("Name", "")),
        owner=str(data.get("OwnerId", "")),
        architecture=str(data.get("Architecture", "x86_64")),
        root_device=root,
        root_size_gb=size,
        created=str(data.get("CreationDate", "")),
    )


def _instance(data: dict[str, Any]) -> Instance:
    launched = data.get("LaunchTime")
    return Instance(
        instance_id=str(data["InstanceId"]),
        state=str(data.get("State", {}).get("Name", "")),
        instance_type=str(data.get("InstanceType", "")),
        public_ip=str(data.get("PublicIpAddress", "")),
        private_ip=str(data.get("PrivateIpAddress", "")),
        spot=data.get("InstanceLifecycle") == "spot",
        launch_time=launched.timestamp() if isinstance(launched, dt.datetime) else time.time(),
        tags=_tags_of(data),
        security_groups=tuple(str(g["GroupId"]) for g in data.get("SecurityGroups", []) if g.get("GroupId")),
    )


def _write_private(path: Path, text: str) -> None:
    """Write a private key readable only by this user, without a moment of wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)
