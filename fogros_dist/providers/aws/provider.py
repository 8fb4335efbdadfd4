"""The AWS provider: an EC2 instance per machine, then the SSH layer for everything on it.

``create`` has two halves. :meth:`AWSProvider.launch` is the EC2 part (checks, key pair, security
group, instance, known host); :meth:`AWSProvider.connect` hands the running instance to the SSH
provider, which waits for SSH and does what every remote machine needs. ``prepare``,
``resolve_node``, ``bridge_argv``, ``upload``, ``start`` and ``attach`` are the SSH provider's.
``terminate`` ends the instance and deletes the key pair and security group it made (and the
deployment's fleet group, once no other instance of the deployment holds it); ``reclaim``
finds and releases, by the deployment's tags, what an interrupted ``create`` left without a Host;
``remaining`` says what of a machine still exists (``leftovers``). Every wait (instance state,
sshd, first boot) is cancelled by ``ProvisionContext.cancel`` within a second (``waits``).

A machine's AWS coordinates travel in its :class:`~fogros_dist.spec.Host` (under the SSH layer's
connection keys, which are never passed to processes, as
``aws://REGION/INSTANCE?deployment=..&machine=..&profile=..&endpoint=..``), so `down` in another
process, after a crash, finds everything again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from fogros_dist.errors import ConfigError, FogError, ProvisionError
from fogros_dist.logs import module_logger
from fogros_dist.providers.aws import config as aws_config
from fogros_dist.providers.aws.config import AwsOptions, caller_owner, key_paths, parse_options
from fogros_dist.providers.aws.deadman import HEARTBEAT, DeadmanConfig, heartbeat_command
from fogros_dist.providers.aws.default_image import ImageChoice, default_image
from fogros_dist.providers.aws.ec2 import (
    FLEET_MACHINE,
    TAG_CREATED,
    TAG_DEPLOYMENT,
    TAG_HOSTKEY,
    TAG_IMAGE_OF,
    TAG_MACHINE,
    TAG_OWNER,
    TAG_TTL,
    Ec2,
    Instance,
    InstanceTypeInfo,
    check_region,
    client_token,
    fleet_group_name,
    resource_name,
)
from fogros_dist.providers.aws.heartbeat import Heartbeat
from fogros_dist.providers.aws.images import GPU_ROS2, ImageRecord, find_image, record_image
from fogros_dist.providers.aws.leftovers import (
    Leftovers,
    find_leftovers,
    release_fleet_group,
    release_resources,
)
from fogros_dist.providers.aws.pricing import CostEstimate, estimate_cost
from fogros_dist.providers.aws.userdata import ROS_READY, generate_host_key, known_hosts_line, user_data
from fogros_dist.providers.aws.waits import Wait, check_cancelled, wait_for_port
from fogros_dist.providers.base import Capabilities, Provider, ProvisionContext
from fogros_dist.providers.remote_verbs import RemoteMachineVerbs
from fogros_dist.remote.agent import gpus_from_json
from fogros_dist.remote.machine import ENV_PREFIX, RemoteMachines, RemoteSettings
from fogros_dist.remote.runner import RetryPolicy, SSHRunner
from fogros_dist.remote.runtime_needs import wants_torch
from fogros_dist.remote.target import SSHTarget
from fogros_dist.spec import Host, MachineSpec, default_distro

__all__ = ["AWSProvider", "AwsRef", "LaunchedInstance", "SshEndpoint"]

_log = module_logger(__name__)

# The Host.env key that holds the AwsRef (the SSH layer keeps ENV_PREFIX keys from processes).
REF_KEY = f"{ENV_PREFIX}AWS_REF"
# A fresh instance takes a minute or two from "running" to sshd answering: its port is polled
# first (cancellable, with progress); the SSH layer's retries then only cover a late banner.
SSH_PORT_TIMEOUT_S = 300.0
SSH_RETRY = RetryPolicy(attempts=20, first_delay_s=1.0, max_delay_s=5.0, timeout_s=10.0)
# Test hook: "HOST:PORT" at which every instance's sshd is reached (tests run it on loopback,
# since moto's instances have addresses that lead nowhere).
SSH_ENDPOINT_ENV = "FOGROS_DIST_AWS_SSH_ENDPOINT"
# apt-installing ROS 2 at first boot takes minutes; much longer means it is stuck.
ROS_INSTALL_TIMEOUT_S = 1800.0
_ROS_POLL_S = 5.0
_DOMAIN_RANGE = range(120, 233)

# Maps an instance's public address to the (host, port) the robot connects to. Production uses the
# address and port 22; a test points it at an sshd it runs with the instance's keys.
SshEndpoint = Callable[[str], tuple[str, int]]


@dataclass(frozen=True, kw_only=True)
class AwsRef:
    """Where a machine lives in AWS: enough to find, image and end it from any process."""

    region: str
    instance_id: str
    deployment: str
    machine: str
    profile: str = ""
    endpoint_url: str = ""

    def to_resource_id(self) -> str:
        """Encode as a Host ``resource_id``."""
        query = urllib.parse.urlencode(
            {
                "deployment": self.deployment,
                "machine": self.machine,
                "profile": self.profile,
                "endpoint": self.endpoint_url,
            }
        )
        return f"aws://{self.region}/{self.instance_id}?{query}"

    @classmethod
    def from_host(cls, host: Host) -> AwsRef:
        """Decode the reference recorded in a Host; ProvisionError if it has none."""
        return cls.from_text(dict(host.env).get(REF_KEY, host.resource_id), machine=host.machine)

    @classmethod
    def from_text(cls, text: str, *, machine: str) -> AwsRef:
        """Decode :meth:`to_resource_id`'s text; ProvisionError if it is not an aws reference."""
        parts = urllib.parse.urlsplit(text)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.scheme != "aws" or not parts.netloc or "deployment" not in query:
            msg = (
                f"machine {machine!r}: {text!r} is not an aws machine reference: the state file was "
                f"edited or comes from another version; end the instance in the AWS console"
            )
            raise ProvisionError(msg)
        return cls(
            region=parts.netloc,
            instance_id=parts.path.strip("/"),
            deployment=query["deployment"],
            machine=query.get("machine", machine),
            profile=query.get("profile", ""),
            endpoint_url=query.get("endpoint", ""),
        )


@dataclass(frozen=True, kw_only=True)
class LaunchedInstance:
    """The EC2 half of ``create``: a running instance the robot can verify over SSH."""

    ref: AwsRef
    options: AwsOptions
    instance_id: str
    public_ip: str
    # The private key of the deployment's key pair (0600) and the known_hosts file that holds
    # the instance's host key for its address.
    key_file: Path
    known_hosts: Path
    host_public_key: str
    reused: bool
    # Where the robot connects: the public address and port 22 (see SshEndpoint).
    ssh_host: str
    ssh_port: int
    # The ROS 2 distro the user-data installs at first boot ("" when the image has it or none).
    install_ros: str = ""

    def target(self) -> SSHTarget:
        """The SSH target: the image's user, the deployment key, the pre-recorded host key."""
        return SSHTarget(
            machine=self.ref.machine,
            alias=self.instance_id,
            hostname=self.ssh_host,
            port=self.ssh_port,
            user=self.options.user,
            identity_file=str(self.key_file),
            known_hosts=str(self.known_hosts),
            # The host key was made on this robot: an unknown or different key is an attack.
            trust_new_host=False,
        )


class AWSProvider(RemoteMachineVerbs):
    """EC2 machines (on-demand or spot), bridged over SSH like any remote host."""

    name: ClassVar[str] = "aws"
    capabilities: ClassVar[Capabilities] = Capabilities(spot=True, gpu=True, image=True, remote=True)

    def __init__(
        self,
        *,
        ssh_endpoint: SshEndpoint | None = None,
        retry: RetryPolicy | None = None,
        heartbeat_path: str = HEARTBEAT,
        ros_ready_path: str = ROS_READY,
    ) -> None:
        """Args:
        ssh_endpoint: where to reach an instance's sshd (default: $FOGROS_DIST_AWS_SSH_ENDPOINT
            if set, else its public address, port 22).
        retry: how hard to try the first SSH connection (default: about three minutes).
        heartbeat_path: the dead-man switch's heartbeat file on the machine.
        ros_ready_path: the file the first-boot ROS 2 install writes when done (its failure
            report is ``ros-failed`` next to it).
        """
        self._ssh_endpoint = ssh_endpoint or _endpoint_from_env() or (lambda address: (address, 22))
        self._retry = retry or SSH_RETRY
        self._machines = RemoteMachines(provider=self.name, retry=self._retry)
        self._heartbeat_path = heartbeat_path
        self._ros_ready_path = ros_ready_path
        self._heartbeats: dict[str, Heartbeat] = {}

    # -- plan ----------------------------------------------------------------------------------

    def validate(self, machine: MachineSpec) -> None:
        """Check the options (offline): unknown ones, types, ranges, the region's name."""
        options = parse_options(machine)
        if options.region:
            check_region(options.region, where=f"machine {machine.name!r}")

    # -- create ----------------------------------------------------------------------------------

    def create(self, machine: MachineSpec, ctx: ProvisionContext) -> Host:
        """Launch (or reuse) the instance, then connect over SSH and start the heartbeat.

        If connecting fails, a newly launched instance is ended again (with its security group
        and key pair): the engine has no Host to tear down yet. A reused one is left as it was.
        """
        launched = self.launch(machine, ctx)
        try:
            return self.connect(launched, ctx)
        except BaseException:
            if not launched.reused:
                with contextlib.suppress(FogError):
                    self.release(launched.ref)
            raise

    def connect(self, launched: LaunchedInstance, ctx: ProvisionContext) -> Host:
        """The SSH half of ``create``: sshd's port answering, ssh-ready (host key verified on the
        first connection), probe, workdir, DDS config; then the heartbeat that keeps the dead-man
        switch quiet.

        Raises:
            Cancelled: ``ctx.cancel`` was set during a wait (noticed within a second).
            ProvisionError: sshd never answered, or the SSH layer failed (one line each).
        """
        options = launched.options
        self.wait_for_sshd(launched, ctx)
        if launched.install_ros:
            self.wait_for_ros(launched, ctx)
        settings = RemoteSettings(
            remote_dir=options.remote_dir,
            bridge_port=options.bridge_port,
            torch=wants_torch(options.torch, ctx.nodes),
        )
        domain_id = next((d for d in _DOMAIN_RANGE if d not in ctx.used_domain_ids), _DOMAIN_RANGE.start)
        host = self._machines.establish(
            launched.target(),
            settings,
            deployment=ctx.deployment,
            domain_id=domain_id,
            progress=ctx.progress,
            workspace=ctx.workspace,
            cancel=ctx.cancel,
        )
        # The AWS coordinates ride with the SSH layer's connection keys (kept from processes).
        host = dataclasses.replace(host, env=(*host.env, (REF_KEY, launched.ref.to_resource_id())))
        self._start_heartbeat(host, deadman_s=options.deadman_minutes * 60)
        return host

    def wait_for_sshd(self, launched: LaunchedInstance, ctx: ProvisionContext) -> None:
        """Wait until the instance's sshd accepts TCP connections (a minute or two after
        "running"), showing stage ``waiting``; cancelled by ``ctx.cancel`` within a second.

        Raises:
            Cancelled: ``ctx.cancel`` was set.
            ProvisionError: the port did not open within :data:`SSH_PORT_TIMEOUT_S`.
        """
        where = f"{launched.ssh_host}:{launched.ssh_port}"
        wait = Wait(
            machine=launched.ref.machine,
            what=f"sshd of instance {launched.instance_id} at {where}",
            timeout_s=SSH_PORT_TIMEOUT_S,
            cancel=ctx.cancel,
            progress=ctx.progress,
        )
        if not wait_for_port(wait, host=launched.ssh_host, port=launched.ssh_port):
            msg = (
                f"aws machine {launched.ref.machine!r}, stage ssh-ready: sshd of instance "
                f"{launched.instance_id} at {where} did not answer within {SSH_PORT_TIMEOUT_S:.0f} s: see "
                f"'aws ec2 get-console-output --region {launched.ref.region} --instance-id "
                f"{launched.instance_id}', and check that robot_cidr/allowed_cidr hold this robot's address"
            )
            raise ProvisionError(msg)

    def wait_for_ros(self, launched: LaunchedInstance, ctx: ProvisionContext) -> None:
        """Wait until the first-boot ROS 2 install of ``launched.install_ros`` is done, refreshing
        the heartbeat meanwhile (it takes minutes; the dead-man switch must not fire).

        Raises:
            Cancelled: ``ctx.cancel`` was set (noticed within a second).
            ProvisionError: it failed (its step named) or did not finish in time.
        """
        distro = launched.install_ros
        ready = self._ros_ready_path
        failed = str(Path(ready).with_name("ros-failed"))
        check = (
            f"touch {self._heartbeat_path} 2>/dev/null; if [ -e {failed} ]; then cat {failed}; exit 3; "
            f"elif [ -e {ready} ]; then exit 0; else exit 1; fi"
        )
        runner = SSHRunner(launched.target(), retry=self._retry)
        started = time.monotonic()
        announced = False
        wait = Wait(
            machine=launched.ref.machine,
            what=f"the first-boot install of ROS 2 {distro}",
            timeout_s=ROS_INSTALL_TIMEOUT_S,
            cancel=ctx.cancel,
            progress=ctx.progress,
            longest_s=_ROS_POLL_S,
        )
        try:
            for _ in wait.attempts():
                done = runner.run(
                    ["sh", "-c", check],
                    check=False,
                    timeout=60.0,
                    what="check the ROS 2 install",
                    cancel=ctx.cancel,
                )
                if done.exit_code == 0:
                    break
                where = f"aws machine {launched.ref.machine!r}, stage installing"
                log = "/var/log/cloud-init-output.log"
                if done.exit_code == 3:
                    msg = (
                        f"{where}: installing ROS 2 {distro} at first boot failed "
                        f"({done.last_error_line()}): "
                        f"see {log} on the machine (fogros-dist ssh {ctx.deployment} {launched.ref.machine} "
                        f"-- tail -50 {log}), or use an image with ROS 2 (ami, ami_name)"
                    )
                    raise ProvisionError(msg)
                if not announced:
                    ctx.progress("installing", f"ROS 2 {distro} on the image (cloud-init, first boot only)")
                    announced = True
                wait.status("cloud-init still installing")
            else:
                log = "/var/log/cloud-init-output.log"
                msg = (
                    f"aws machine {launched.ref.machine!r}, stage installing: ROS 2 {distro} was not "
                    f"installed within {ROS_INSTALL_TIMEOUT_S:.0f} s of first boot: see {log} on the machine"
                )
                raise ProvisionError(msg)
        finally:
            runner.close()
        if announced:
            ctx.progress("installed", f"ROS 2 {distro} in {time.monotonic() - started:.0f} s")

    def _start_heartbeat(self, host: Host, *, deadman_s: int) -> None:
        command = heartbeat_command(self._heartbeat_path)

        def beat() -> None:
            self._machines.agent(host).runner.run(command, timeout=30.0, what="refresh the heartbeat")

        beat()  # once now, so a broken heartbeat fails `up` instead of ending the machine later
        previous = self._heartbeats.pop(host.machine, None)
        if previous is not None:
            previous.stop()
        heartbeat = Heartbeat(name=host.machine, beat=beat, interval_s=max(5.0, min(60.0, deadman_s / 5)))
        heartbeat.start()
        self._heartbeats[host.machine] = heartbeat

    # -- create: the EC2 half ------------------------------------------------------------------

    def launch(self, machine: MachineSpec, ctx: ProvisionContext) -> LaunchedInstance:
        """Create (or reuse) the machine's EC2 instance and wait until it runs.

        Reuses a pending or running instance tagged with this deployment and machine. Records the
        instance's SSH host key as the known host for its public address. With ``fleet_group``
        the instance also joins the deployment's fleet group (made or reconciled here; a reused
        instance that lacks it gets it added), so the deployment's machines in this region
        reach each other on every port and nothing else reaches them through it.

        Every resource is tagged by the request that creates it, and the instance's request
        carries an idempotency token (:func:`~fogros_dist.providers.aws.ec2.client_token` of the
        deployment, the machine and ``ctx.created_at``): whenever this is interrupted, what
        exists is found again by :meth:`reclaim`, and a retried request launches nothing twice.

        Raises:
            Cancelled: ``ctx.cancel`` was set (checked between API calls and in every wait);
                what this call created is released before it propagates.
            ConfigError: bad options, unknown profile or region.
            ProvisionError: no credentials; unknown instance type or AMI; capacity or quota
                errors; the instance did not come up. Each names the stage, machine and fix.
        """
        options = parse_options(machine)

        def check(doing: str) -> None:
            check_cancelled(ctx.cancel, machine=machine.name, doing=doing)

        ec2 = Ec2(
            region=options.region,
            profile=options.profile,
            endpoint_url=options.endpoint_url,
            machine=machine.name,
        )
        check("requesting an instance")
        type_info = ec2.instance_type(options.instance_type)
        choice = self._image(ec2, options, type_info)
        check("requesting an instance")
        ctx.progress(
            "requesting",
            f"{type_info.describe()}; {options.market()} in {ec2.region}; "
            f"AMI {choice.image.image_id} ({choice.image.name}): {choice.why}",
        )
        key_file, known_hosts = key_paths(deployment=ctx.deployment, machine=machine.name)
        cidrs = options.allowed_cidr or (options.robot_cidr or aws_config.discover_public_cidr(),)
        existing = ec2.find_instances(deployment=ctx.deployment, machine=machine.name)
        now = time.time()
        tags = _tags(
            deployment=ctx.deployment, machine=machine.name, created=now, ttl_minutes=options.ttl_minutes
        )
        ref = AwsRef(
            region=ec2.region,
            instance_id="",
            deployment=ctx.deployment,
            machine=machine.name,
            profile=options.profile,
            endpoint_url=options.endpoint_url,
        )
        try:
            # Made (or reconciled) on reuse too: the robot's address may have changed since.
            group_ids = self._security_groups(ec2, options, ctx, cidrs=cidrs, tags=tags, created=now)
            if existing:
                instance = existing[-1]
                host_public_key = instance.tag(TAG_HOSTKEY)
                if not key_file.exists() or not host_public_key:
                    missing = "its SSH key " + str(key_file) if not key_file.exists() else "its host key tag"
                    msg = (
                        f"aws machine {machine.name!r}, stage requesting: instance {instance.instance_id} of "
                        f"this deployment is running but {missing} is missing on this robot: end it with "
                        f"'aws ec2 terminate-instances --region {ec2.region} --instance-ids "
                        f"{instance.instance_id}', then up again"
                    )
                    raise ProvisionError(msg)
                ctx.progress("pending", f"reusing instance {instance.instance_id} ({instance.state})")
                missing_groups = [g for g in group_ids if g not in instance.security_groups]
                if missing_groups:
                    # Launched before fleet_group was set (or by hand): joins it now, keeps the rest.
                    ec2.set_instance_groups(
                        instance.instance_id, [*instance.security_groups, *missing_groups]
                    )
                reused = True
            else:
                instance, host_public_key = self._new_instance(
                    ec2, options, choice, ctx, group_ids=group_ids, tags=tags, created=now
                )
                reused = False
            # A spot instance stays pending until its request is fulfilled: the same wait covers it.
            running = ec2.wait_state(
                instance.instance_id,
                want="running",
                stage="pending",
                cancel=ctx.cancel,
                progress=ctx.progress,
            )
            if not running.public_ip:
                msg = (
                    f"aws machine {machine.name!r}, stage running: instance {running.instance_id} has no "
                    f"public address: enable 'auto-assign public IPv4' on the default subnets of {ec2.region}"
                )
                raise ProvisionError(msg)
        except BaseException:
            # What this call created goes again (the engine never saw it); a reused instance stays.
            if not existing:
                with contextlib.suppress(FogError):
                    self.release(ref)
            raise
        ssh_host, ssh_port = self._ssh_endpoint(running.public_ip)
        known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        known_hosts.write_text(known_hosts_line(address=ssh_host, public_key=host_public_key, port=ssh_port))
        known_hosts.chmod(0o600)
        ctx.progress("running", f"instance {running.instance_id} at {running.public_ip}")
        ref = dataclasses.replace(ref, instance_id=running.instance_id)
        return LaunchedInstance(
            ref=ref,
            options=options,
            instance_id=running.instance_id,
            public_ip=running.public_ip,
            key_file=key_file,
            known_hosts=known_hosts,
            host_public_key=host_public_key,
            reused=reused,
            ssh_host=ssh_host,
            ssh_port=ssh_port,
            install_ros=choice.install_ros,
        )

    def _security_groups(
        self,
        ec2: Ec2,
        options: AwsOptions,
        ctx: ProvisionContext,
        *,
        cidrs: tuple[str, ...],
        tags: dict[str, str],
        created: float,
    ) -> list[str]:
        """The ids of the groups the instance is in, each made or reconciled: its own (SSH, the
        bridge port and ``udp_ports`` from ``cidrs``), then with ``fleet_group`` the deployment's
        fleet group."""
        name = resource_name(deployment=ctx.deployment, machine=options.machine)
        group_ids = [
            ec2.ensure_security_group(
                name, tags=tags, cidrs=cidrs, ports=(22, options.bridge_port), udp_ports=options.udp_ports
            )
        ]
        check_cancelled(ctx.cancel, machine=options.machine, doing="creating its security group")
        if options.fleet_group:
            fleet_tags = _tags(
                deployment=ctx.deployment,
                machine=FLEET_MACHINE,
                created=created,
                ttl_minutes=options.ttl_minutes,
            )
            group_ids.append(ec2.ensure_fleet_group(fleet_group_name(ctx.deployment), tags=fleet_tags))
            check_cancelled(
                ctx.cancel, machine=options.machine, doing="creating the deployment's fleet group"
            )
        return group_ids

    def _new_instance(
        self,
        ec2: Ec2,
        options: AwsOptions,
        choice: ImageChoice,
        ctx: ProvisionContext,
        *,
        group_ids: list[str],
        tags: dict[str, str],
        created: float,
    ) -> tuple[Instance, str]:
        """The key pair (unless this robot holds it already) and the instance: (instance, the
        SSH host public key its user-data installs)."""
        machine = options.machine
        name = resource_name(deployment=ctx.deployment, machine=machine)
        key_file, _ = key_paths(deployment=ctx.deployment, machine=machine)
        if ec2.key_pair_exists(name) and not key_file.exists():
            # A key pair whose private half this robot lacks is useless: replace it.
            ec2.delete_key_pair(name, stage="requesting")
        if not ec2.key_pair_exists(name):
            ec2.create_key_pair(name, tags=tags, key_file=key_file)
        check_cancelled(ctx.cancel, machine=machine, doing="creating its key pair")
        host_key = generate_host_key()
        deadline = int(created + options.ttl_minutes * 60) if options.ttl_minutes else 0
        instance = ec2.run_instance(
            image=choice.image,
            instance_type=options.instance_type,
            key_name=name,
            group_ids=group_ids,
            user_data=user_data(
                host_key=host_key,
                deadman=DeadmanConfig(
                    timeout_s=options.deadman_minutes * 60,
                    deadline=deadline,
                    heartbeat=self._heartbeat_path,
                ),
                user=options.user,
                install_ros=choice.install_ros,
            ),
            disk_gb=options.disk_gb,
            spot=options.spot,
            tags={**tags, TAG_HOSTKEY: host_key.public_openssh},
            token=client_token(deployment=ctx.deployment, machine=machine, created_at=ctx.created_at),
        )
        ctx.progress("pending", f"instance {instance.instance_id} ({options.market()}) is starting")
        return instance, host_key.public_openssh

    def _image(self, ec2: Ec2, options: AwsOptions, type_info: InstanceTypeInfo) -> ImageChoice:
        """The machine's AMI: from its options, else the default for its instance type."""
        architectures = type_info.architectures
        arch = "arm64" if "x86_64" not in architectures and "arm64" in architectures else "x86_64"
        if options.ami:
            choice = ImageChoice(image=ec2.image_by_id(options.ami), why="option ami")
        elif (
            options.ami_name
            and not options.ami_owner
            and (record := find_image(options.ami_name, region=ec2.region))
        ):
            why = f"option ami_name, recorded by 'fogros-dist image' from {record.source}"
            choice = ImageChoice(image=ec2.image_by_id(record.image_id), why=why)
        elif options.ami_name:
            image = ec2.image_by_name(options.ami_name, owner=options.ami_owner or "self")
            choice = ImageChoice(image=image, why="option ami_name")
        else:
            found = default_image(ec2, instance_type=type_info, architecture=arch, distro=default_distro())
            choice = dataclasses.replace(found, why=f"default for {type_info.name}: {found.why}")
        image = choice.image
        if image.architecture not in architectures:
            msg = (
                f"aws machine {options.machine!r}, stage requesting: AMI {image.image_id} ({image.name}) is "
                f"{image.architecture} but {options.instance_type} runs {'/'.join(architectures)}: pick an "
                f"{'/'.join(architectures)} image or another instance type"
            )
            raise ProvisionError(msg)
        return choice

    # -- teardown and images ---------------------------------------------------------------------

    def terminate(self, host: Host) -> None:
        """End the machine's instance (waiting until it is terminated), then delete its security
        group, its key pair, any loose volume and the local key and known_hosts files, and the
        deployment's fleet group unless another instance of the deployment still holds it.

        Raises:
            ProvisionError: something could not be released (the first failure, after trying all);
                :meth:`remaining` then says what is left.
        """
        self._forget(host.machine)
        self.release(AwsRef.from_host(host))

    def release(self, ref: AwsRef) -> None:
        """Delete everything :meth:`launch` made for ``ref``'s deployment and machine (found by its
        tags, its names and ``ref.instance_id``), whoever's owner tag it carries.

        Raises:
            ProvisionError: the first failure, after trying everything else.
        """
        ec2 = Ec2(
            region=ref.region,
            profile=ref.profile,
            endpoint_url=ref.endpoint_url,
            machine=ref.machine,
            stage="terminating",
        )
        found = find_leftovers(
            ec2,
            deployment=ref.deployment,
            machine=ref.machine,
            instance_id=ref.instance_id,
            named=resource_name(deployment=ref.deployment, machine=ref.machine),
            stage="terminating",
        )
        errors = self._release(ec2, found, stage="terminating")
        # Once this instance is gone: other machines of the deployment may have gone meanwhile.
        errors += release_fleet_group(ec2, deployment=ref.deployment, stage="terminating")
        if errors:
            more = f" (and {len(errors) - 1} more failure(s))" if len(errors) > 1 else ""
            raise ProvisionError(errors[0] + more)

    def reclaim(self, machine: MachineSpec, *, deployment: str) -> tuple[str, ...]:
        """Release what :meth:`launch` may have made for ``machine`` of ``deployment`` that no Host
        records (its ``create`` was interrupted, or its process killed): whatever carries this
        deployment's, this machine's and this caller's tags in the machine's region (instances,
        waited for until terminated; spot requests; the security group; the key pair; loose
        volumes), the deployment's fleet group once no other instance of the deployment holds
        it, and the machine's key files on the robot.

        Idempotent; with nothing there it costs six describe calls.

        Returns:
            What is still left afterwards, one line each (then one line per failure, saying why).

        Raises:
            ConfigError: the machine's options or profile are bad.
            ProvisionError: EC2 could not be asked (nothing is then known to be gone).
        """
        options = parse_options(machine)
        stage = "reclaiming"
        ec2 = Ec2(
            region=options.region,
            profile=options.profile,
            endpoint_url=options.endpoint_url,
            machine=machine.name,
            stage=stage,
        )
        # Only its heartbeat, if it got that far: other machines of this provider may still be live.
        heartbeat = self._heartbeats.pop(machine.name, None)
        if heartbeat is not None:
            heartbeat.stop()

        def find() -> Leftovers:
            return find_leftovers(
                ec2, deployment=deployment, machine=machine.name, owner=caller_owner(), stage=stage
            )

        found = find()
        if not found.describe():
            return ()
        errors = self._release(ec2, found, stage=stage)
        errors += release_fleet_group(ec2, deployment=deployment, owner=caller_owner(), stage=stage)
        left = find().describe()
        return (*left, *errors) if left else ()

    def remaining(self, host: Host) -> tuple[str, ...]:
        """What of ``host`` still exists, asked of EC2 itself: its instance unless terminated,
        anything else tagged for its deployment and machine (security group, key pair, volumes,
        spot requests), the deployment's fleet group while no other instance of the deployment
        is left to delete it, and its key files on the robot. Empty: nothing.

        Raises:
            ProvisionError: EC2 could not be asked (nothing is then known to be gone).
        """
        ref = AwsRef.from_host(host)
        ec2 = Ec2(
            region=ref.region,
            profile=ref.profile,
            endpoint_url=ref.endpoint_url,
            machine=ref.machine,
            stage="checking",
        )
        return find_leftovers(
            ec2,
            deployment=ref.deployment,
            machine=ref.machine,
            instance_id=ref.instance_id,
            named=resource_name(deployment=ref.deployment, machine=ref.machine),
            stage="checking",
        ).describe()

    def _release(self, ec2: Ec2, found: Leftovers, *, stage: str) -> list[str]:
        errors = release_resources(ec2, found.resources, stage=stage)
        for path in found.key_files:
            path.unlink(missing_ok=True)
        return errors

    def _forget(self, machine: str) -> None:
        """Stop the machine's heartbeat; close SSH when no machine is left (no cleanup on an
        instance about to be destroyed, which may be unreachable)."""
        heartbeat = self._heartbeats.pop(machine, None)
        if heartbeat is not None:
            heartbeat.stop()
        if not self._heartbeats:
            self._machines.close()

    def image(self, host: Host, *, name: str, reboot: bool = False) -> ImageRecord:
        """Make an AMI of the machine's instance, wait until it is available and record it.

        Args:
            host: the running machine.
            name: the AMI's name; a machine's ``ami_name`` option finds it afterwards.
            reboot: let AWS reboot the instance for a consistent file system (stops its nodes).

        Raises:
            ProvisionError: AWS refused, or the image failed.
        """
        ref = AwsRef.from_host(host)
        ec2 = Ec2(
            region=ref.region,
            profile=ref.profile,
            endpoint_url=ref.endpoint_url,
            machine=ref.machine,
            stage="imaging",
        )
        created = dt.datetime.now(tz=dt.timezone.utc).isoformat(timespec="seconds")
        source = f"{ref.deployment}/{ref.machine}"
        # Not the deployment tags: `down --all` must never delete an image someone made on purpose.
        tags = {"Name": name, TAG_IMAGE_OF: source, TAG_OWNER: caller_owner(), TAG_CREATED: created}
        image_id = ec2.create_image(ref.instance_id, name=name, tags=tags, reboot=reboot)
        # An image of a GPU machine with ROS 2 becomes the default for GPU instance types.
        conn = dict(host.env)
        ros_setup = conn.get(f"{ENV_PREFIX}ROS_SETUP", "")
        gpus = gpus_from_json(conn.get(f"{ENV_PREFIX}GPUS", ""))
        record = ImageRecord(
            name=name,
            region=ref.region,
            image_id=image_id,
            created=created,
            source=source,
            kind=GPU_ROS2 if gpus and ros_setup else "",
            ros_distro=Path(ros_setup).parent.name if ros_setup else "",
        )
        record_image(record)
        return record

    # -- cost ----------------------------------------------------------------------------------

    def estimate_cost(self, machine: MachineSpec, *, seconds: float) -> CostEstimate:
        """The machine's estimated cost after ``seconds`` of running (offline, from the price table)."""
        options = parse_options(machine)
        region = options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "")
        return estimate_cost(
            instance_type=options.instance_type,
            region=region or "us-east-1",
            seconds=seconds,
            spot=options.spot,
        )


def _endpoint_from_env() -> SshEndpoint | None:
    value = os.environ.get(SSH_ENDPOINT_ENV, "")
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        msg = f"{SSH_ENDPOINT_ENV}={value!r} is not HOST:PORT: set it like 127.0.0.1:2222, or unset it"
        raise ConfigError(msg)
    return lambda _address: (host, int(port))


def _tags(*, deployment: str, machine: str, created: float, ttl_minutes: int) -> dict[str, str]:
    created_at = dt.datetime.fromtimestamp(created, tz=dt.timezone.utc)
    expires = (
        (created_at + dt.timedelta(minutes=ttl_minutes)).isoformat(timespec="seconds")
        if ttl_minutes
        else "none"
    )
    return {
        "Name": resource_name(deployment=deployment, machine=machine),
        TAG_DEPLOYMENT: deployment,
        TAG_MACHINE: machine,
        TAG_OWNER: caller_owner(),
        TAG_CREATED: created_at.isoformat(timespec="seconds"),
        TAG_TTL: expires,
    }


if TYPE_CHECKING:
    # mypy proves here that AWSProvider implements the Provider protocol.
    _PROVIDER: type[Provider] = AWSProvider
