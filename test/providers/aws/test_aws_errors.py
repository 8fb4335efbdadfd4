"""Bad input and AWS refusals: each is one line naming the stage, the machine, the value and the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aws_test_helpers import CANONICAL, UBUNTU_AMI_NAME, Progress, context, ec2_client, machine, tagged

from fogros_dist.errors import ConfigError, ProvisionError
from fogros_dist.machines import AWS
from fogros_dist.providers.aws.config import key_paths, parse_options
from fogros_dist.providers.aws.ec2 import translate_error
from fogros_dist.providers.aws.provider import AWSProvider, AwsRef
from fogros_dist.registry import get_provider
from fogros_dist.spec import MachineSpec


def _launch_error(tmp_path: Path, deployment: str, **options: object) -> str:
    with pytest.raises((ProvisionError, ConfigError)) as caught:
        AWSProvider().launch(machine(**options), context(tmp_path, deployment))
    text = str(caught.value)
    assert "\n" not in text
    return text


# -- against the EC2 API (moto) -----------------------------------------------------------------


def test_unknown_instance_type_suggests_close_names(
    aws_env: dict[str, str], tmp_path: Path, deployment: str
) -> None:
    text = _launch_error(tmp_path, deployment, instance_type="g5.xlarg")
    assert text.startswith(
        "aws machine 'gpu', stage requesting: instance type 'g5.xlarg' does not exist in us-west-2"
    )
    assert "did you mean 'g5.xlarge'" in text
    assert "aws ec2 describe-instance-types --region us-west-2" in text
    # Nothing was created for a request that failed its checks.
    assert tagged(ec2_client(), deployment) == {}


def test_unknown_ami(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    text = _launch_error(tmp_path, deployment, ami="ami-0123456789abcdef0")
    assert text.startswith("aws machine 'gpu', stage requesting:")
    assert "ami-0123456789abcdef0" in text
    assert "AMI ids differ per region" in text


def test_unknown_ami_name(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    text = _launch_error(
        tmp_path, deployment, ami=None, ami_name="ubuntu/no-such-image-*", ami_owner=CANONICAL
    )
    assert text == (
        f"aws machine 'gpu', stage requesting: no available AMI named 'ubuntu/no-such-image-*' owned by "
        f"'{CANONICAL}' in us-west-2: check the name ('*' matches anything) and ami_owner, "
        f"or set ami to an AMI id"
    )


def test_ami_name_picks_the_newest_match(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    progress = Progress()
    AWSProvider().launch(
        machine(ami=None, ami_name=UBUNTU_AMI_NAME, ami_owner=CANONICAL, instance_type="t3.micro"),
        context(tmp_path, deployment, progress),
    )
    assert "ubuntu-xenial-16.04-amd64-server" in progress.events[0][1]
    AWSProvider().release(AwsRef(region="us-west-2", instance_id="", deployment=deployment, machine="gpu"))


def test_architecture_mismatch(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    # An x86_64 Ubuntu image on a Graviton (arm64) instance type.
    text = _launch_error(tmp_path, deployment, instance_type="m6g.large")
    assert "is x86_64 but m6g.large runs arm64" in text


def test_disk_smaller_than_the_image(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    # moto's Canonical records have no root volume size; an image made here has one (from the instance).
    client = ec2_client()
    instance = client.run_instances(ImageId="ami-785db401", InstanceType="t3.micro", MinCount=1, MaxCount=1)
    instance_id = instance["Instances"][0]["InstanceId"]
    image = client.create_image(InstanceId=instance_id, Name=f"{deployment}-big")["ImageId"]
    client.terminate_instances(InstanceIds=[instance_id])
    size = client.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"][
        "VolumeSize"
    ]
    if size <= 8:
        pytest.skip(f"moto made a {size} GiB image: too small to test disk_gb against")
    text = _launch_error(tmp_path, deployment, ami=image, disk_gb=8)
    assert f"disk_gb 8 is smaller than the {size} GiB image" in text
    # The security group and key pair made before the refusal are gone again.
    assert tagged(client, deployment) == {}
    assert not key_paths(deployment=deployment, machine="gpu")[0].exists()


def test_missing_credentials(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    text = _launch_error(tmp_path, deployment)
    assert text == (
        "aws machine 'gpu', stage requesting: no AWS credentials found (the default credential chain): "
        "run 'aws configure' (or 'aws configure --profile NAME' and set AWS_PROFILE=NAME)"
    )


def test_unknown_profile(aws_env: dict[str, str], tmp_path: Path, deployment: str) -> None:
    config = Path(aws_env["AWS_CONFIG_FILE"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[profile lab]\nregion = us-west-2\n")
    text = _launch_error(tmp_path, deployment, profile="labb")
    assert text == (
        "aws machine 'gpu', stage requesting: AWS profile 'labb' does not exist (known: lab): create it with "
        "'aws configure --profile NAME', or set option profile / AWS_PROFILE to a known one"
    )


def test_profile_supplies_credentials(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = Path(aws_env["AWS_SHARED_CREDENTIALS_FILE"])
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.write_text("[lab]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    launched = AWSProvider().launch(
        machine(profile="lab", instance_type="t3.micro"), context(tmp_path, deployment)
    )
    assert launched.ref.profile == "lab"
    AWSProvider().release(launched.ref)


def test_no_region_anywhere(
    aws_env: dict[str, str], tmp_path: Path, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    text = _launch_error(tmp_path, deployment, region=None)
    assert text.startswith(
        "aws machine 'gpu', stage requesting: no AWS region is set: set machine option region"
    )


def test_unknown_region_at_plan_time() -> None:
    with pytest.raises(ConfigError) as caught:
        AWSProvider().validate(machine(region="us-west-9"))
    assert str(caught.value).startswith(
        "machine 'gpu': region 'us-west-9' is not an AWS region: did you mean"
    )
    assert "'us-west-1'" in str(caught.value)


# -- translations of errors moto does not produce -----------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "InsufficientInstanceCapacity",
            "aws machine 'gpu', stage requesting: AWS has no g5.xlarge capacity in us-west-2 right now: "
            "retry later, or use another region or instance type (spot capacity differs from on-demand)",
        ),
        (
            "VcpuLimitExceeded",
            "aws machine 'gpu', stage requesting: your vCPU quota for g5 instances in us-west-2 is too low "
            "for g5.xlarge: request an increase in the Service Quotas console (EC2, 'Running On-Demand' or "
            "'All Spot' instance requests for that family), or pick a smaller instance type",
        ),
        (
            "MaxSpotInstanceCountExceeded",
            "aws machine 'gpu', stage requesting: the account's spot instance limit in us-west-2 is "
            "reached: set spot = false, end other spot instances, or request a higher 'All Spot Instance "
            "Requests' quota in Service Quotas",
        ),
    ],
)
def test_capacity_and_quota_errors(code: str, expected: str) -> None:
    text = translate_error(
        code=code,
        message="We currently do not have sufficient capacity",
        operation="run_instances",
        stage="requesting",
        machine="gpu",
        region="us-west-2",
        instance_type="g5.xlarge",
    )
    assert text == expected


def test_client_error_is_translated_at_the_boundary(aws_env: dict[str, str]) -> None:
    import botocore.exceptions

    from fogros_dist.providers.aws.ec2 import Ec2

    ec2 = Ec2(region="us-west-2", machine="gpu")

    class Refusing:
        def run_instances(self, **kwargs: object) -> None:
            del kwargs
            error = {"Error": {"Code": "VcpuLimitExceeded", "Message": "quota"}}
            raise botocore.exceptions.ClientError(error, "RunInstances")  # type: ignore[arg-type]

    ec2.client = Refusing()
    with pytest.raises(ProvisionError, match="your vCPU quota for g5 instances") as caught:
        ec2.call("requesting", "run_instances", instance_type="g5.xlarge")
    assert isinstance(caught.value.__cause__, botocore.exceptions.ClientError)


# -- options, offline ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"instance_typ": "g5.xlarge"},
            "option 'instance_typ' is not supported by provider 'aws': did you mean",
        ),
        ({"spot": "yes"}, "option spot must be true or false, got 'yes'"),
        ({"deadman_minutes": 0}, "option deadman_minutes is 0: use a whole number in 1..10080"),
        ({"disk_gb": 4}, "option disk_gb is 4: use a whole number in 8..16384"),
        ({"ami": "ubuntu-22.04"}, "ami 'ubuntu-22.04' is not an AMI id"),
        ({"ami_name": "x"}, "set either ami ('ami-785db401') or ami_name ('x'), not both"),
        ({"allowed_cidr": "0.0.0.0/0"}, "opens the machine to the whole internet"),
        ({"robot_cidr": "not-an-address"}, "which is not an address or CIDR"),
        ({"user": "Ubuntu Admin"}, "user 'Ubuntu Admin' is not a valid login name"),
        ({"endpoint_url": "127.0.0.1:5000"}, "endpoint_url '127.0.0.1:5000' must start with http://"),
        ({"bridge_port": 80}, "option bridge_port is 80: use a whole number in 1024..65535"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(machine(**options))
    assert str(caught.value).startswith("machine 'gpu': ")
    assert message in str(caught.value)


def test_machine_name_must_fit_aws_names() -> None:
    with pytest.raises(ConfigError, match="an aws machine name becomes part of AWS resource names"):
        parse_options(MachineSpec(name="gpu/1", provider="aws"))


def test_defaults() -> None:
    options = parse_options(AWS())
    assert (options.instance_type, options.user, options.deadman_minutes, options.disk_gb) == (
        "t3.medium",
        "ubuntu",
        15,
        40,
    )
    assert options.spot is False
    assert options.ttl_minutes == 0
    assert parse_options(AWS(allowed_cidr=["192.0.2.1", "10.0.0.0/8"])).allowed_cidr == (
        "192.0.2.1/32",
        "10.0.0.0/8",
    )


def test_registry_loads_the_provider_without_boto3() -> None:
    import subprocess

    code = (
        "import sys; from fogros_dist.registry import get_provider; p = get_provider('aws'); "
        "print(p.name, p.capabilities.spot, p.capabilities.image, 'boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["aws", "True", "True", "False"]
    assert get_provider("aws").name == "aws"
