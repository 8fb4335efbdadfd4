"""cloud_images/: the Packer AMI, the cloud-init user-data and the Dockerfile run one install.sh
that pins exactly requirements.txt. Real validators run where installed (cloud-init schema,
bash, shellcheck, packer, python-hcl2); structural checks run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cloud_images_test_helpers import (
    DISTROS,
    DOCKERFILE,
    DOCKERIGNORE,
    INSTALL_SH,
    PACKER,
    RENDER_PY,
    REQUIREMENTS,
    ROOT,
    Block,
    HclError,
    allowed_versions,
    dockerfile_instructions,
    hcl_object,
    hcl_string,
    install_sh_pins,
    parse_hcl,
    pins_in,
    requirement_pins,
    user_data_path,
)

CLOUD_INIT_MISSING = "cloud-init is not installed (Debian package cloud-init; `make test` installs it)"
# EC2 rejects user data over 16 KB (before base64).
EC2_USER_DATA_LIMIT = 16 * 1024


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloud_init_render", RENDER_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_data(distro: str) -> dict[str, object]:
    loaded = yaml.safe_load(user_data_path(distro).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def packer() -> Block:
    return parse_hcl(PACKER.read_text())


# ---------------------------------------------------------------------------------------------
# One script, one set of pins
# ---------------------------------------------------------------------------------------------


def test_install_sh_pins_exactly_requirements_txt() -> None:
    required = requirement_pins()
    assert "torch" in allowed_versions(required), (
        "requirements.txt must pin torch: the GPU image is built around it"
    )
    assert install_sh_pins(INSTALL_SH.read_text()) == required, "run python3 cloud_images/render.py"
    render = _render_module()
    assert render.with_pins(INSTALL_SH.read_text(), REQUIREMENTS.read_text()) == INSTALL_SH.read_text()


@pytest.mark.parametrize(
    "path",
    [PACKER, DOCKERFILE, INSTALL_SH, *(user_data_path(d) for d in DISTROS)],
    ids=lambda p: p.name,
)
def test_no_image_file_pins_another_version(path: Path) -> None:
    required = allowed_versions(requirement_pins())
    drift = [
        f"{name}=={version} (requirements.txt: {' or '.join(sorted(required[name]))})"
        for name, version in pins_in(path.read_text())
        if name in required and version not in required[name]
    ]
    assert not drift, f"{path.name} pins other versions than requirements.txt: {drift}"


@pytest.mark.parametrize("distro", DISTROS)
def test_user_data_is_rendered_from_current_install_sh(distro: str) -> None:
    render = _render_module()
    assert user_data_path(distro).read_text() == render.render(distro, INSTALL_SH.read_text()), (
        f"{user_data_path(distro).name} is stale: run python3 cloud_images/render.py"
    )


@pytest.mark.parametrize("distro", DISTROS)
def test_user_data_writes_install_sh_verbatim_and_runs_it(distro: str) -> None:
    data = _user_data(distro)
    files = data["write_files"]
    assert isinstance(files, list)
    [script] = [f for f in files if f["path"] == "/opt/fogros_dist/install.sh"]
    assert script["content"] == INSTALL_SH.read_text()
    assert script["permissions"] == "0755"
    assert data["runcmd"] == [
        [
            "env",
            f"ROS_DISTRO={distro}",
            f"NVIDIA_DRIVER={_render_module().NVIDIA_DRIVER}",
            "FOGROS_WHEEL=",
            "/opt/fogros_dist/install.sh",
        ]
    ]


def test_packer_runs_install_sh_with_the_wheel_it_uploads(packer: Block) -> None:
    build = packer.only("build")
    shells = build.children("provisioner", "shell")
    [install] = [p for p in shells if "script" in p.attributes]
    script = hcl_string(install.attributes["script"]).replace("${path.root}", str(PACKER.parent))
    assert Path(script).resolve() == INSTALL_SH
    env = install.attributes["environment_vars"]
    assert '"ROS_DISTRO=${var.ros_distro}"' in env
    assert '"NVIDIA_DRIVER=${var.nvidia_driver}"' in env
    assert '"FOGROS_WHEEL=${local.wheel_on_machine}"' in env
    assert "sudo" in install.attributes["execute_command"], "install.sh must run as root"
    upload = build.only("provisioner", "file")
    assert upload.attributes["source"] == "var.fogros_wheel"
    assert upload.attributes["destination"] == "local.wheel_on_machine"
    # pip needs the wheel's real file name, so the upload keeps it.
    assert "basename(var.fogros_wheel)" in packer.only("locals").attributes["wheel_on_machine"]


def test_dockerfile_runs_install_sh_without_a_driver() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert instructions[0] == ("ARG", "ROS_DISTRO=jazzy")
    froms = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    final = froms[-1]
    assert instructions[final] == ("FROM", "ros:${ROS_DISTRO}-ros-base")
    stage = instructions[final + 1 :]
    # An ARG before the first FROM is invisible inside a stage until declared again.
    assert ("ARG", "ROS_DISTRO") in stage
    copies = [args.split() for keyword, args in stage if keyword == "COPY"]
    [dest] = [c[-1] for c in copies if c[0] == "cloud_images/scripts/install.sh"]
    [run] = [args for keyword, args in stage if keyword == "RUN" and dest in args]
    assert f"bash {dest}" in run
    assert "NVIDIA_DRIVER=none" in run
    assert 'ROS_DISTRO="${ROS_DISTRO}"' in run
    assert "FOGROS_WHEEL=" in run


def test_dockerfile_copies_only_what_the_context_has() -> None:
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword != "COPY" or args.startswith("--from="):
            continue
        *sources, _dest = args.split()
        for source in sources:
            found = (ROOT / source).exists() or any(ROOT.glob(source))
            assert found, f"COPY {source}: not in the build context (the repo root)"
    ignored = DOCKERIGNORE.read_text().split()
    assert ".venv" in ignored, "the build context would carry .venv (torch: gigabytes)"
    assert ".git" in ignored


def test_variants_default_to_the_same_distro_and_driver(packer: Block) -> None:
    variables = {b.labels[0]: b for b in packer.children("variable")}
    assert variables["ros_distro"].attributes["default"] == '"jazzy"'
    assert ("ARG", "ROS_DISTRO=jazzy") in dockerfile_instructions(DOCKERFILE.read_text())
    driver = hcl_string(variables["nvidia_driver"].attributes["default"])
    assert driver == _render_module().NVIDIA_DRIVER


# ---------------------------------------------------------------------------------------------
# cloud-init user-data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distro", DISTROS)
def test_user_data_passes_cloud_init_schema(distro: str) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip(CLOUD_INIT_MISSING)
    path = user_data_path(distro)
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_rejects_a_broken_user_data(tmp_path: Path) -> None:
    """The validator bites: the same file with a write_files entry that lost its path fails."""
    if shutil.which("cloud-init") is None:
        pytest.skip(CLOUD_INIT_MISSING)
    text = user_data_path("jazzy").read_text()
    entry = "  - path: /opt/fogros_dist/install.sh\n    owner: root:root\n"
    assert entry in text
    broken = tmp_path / "user-data.yaml"
    broken.write_text(text.replace(entry, "  - owner: root:root\n"))
    result = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "'path' is a required property" in result.stdout + result.stderr


@pytest.mark.parametrize("distro", DISTROS)
def test_user_data_uses_only_cloud_init_modules(distro: str) -> None:
    """cloud-init 22.x accepts unknown top-level keys silently; a typo (`run_cmd`) would do nothing."""
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.skip(CLOUD_INIT_MISSING)
    # The schema is read with cloud-init's own interpreter (the system Python, not this venv).
    interpreter = Path(cloud_init).read_text().splitlines()[0].removeprefix("#!").split()
    schema = json.loads(
        subprocess.run(
            [
                *interpreter,
                "-c",
                "import json, cloudinit.config.schema as s; print(json.dumps(s.get_schema()))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    known = {key for definition in schema["$defs"].values() for key in definition.get("properties", {})}
    assert {"runcmd", "write_files", "packages"} <= known
    assert set(_user_data(distro)) <= known


@pytest.mark.parametrize("distro", DISTROS)
def test_user_data_header_and_size(distro: str) -> None:
    raw = user_data_path(distro).read_bytes()
    assert raw.startswith(b"#cloud-config\n"), "cloud-init ignores user-data without this first line"
    assert len(raw) < EC2_USER_DATA_LIMIT, f"{len(raw)} bytes: EC2 takes at most {EC2_USER_DATA_LIMIT}"


# ---------------------------------------------------------------------------------------------
# install.sh
# ---------------------------------------------------------------------------------------------


def test_install_sh_parses_with_bash() -> None:
    result = subprocess.run(["bash", "-n", str(INSTALL_SH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_install_sh_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    result = subprocess.run(
        ["shellcheck", "--shell=bash", str(INSTALL_SH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_install_sh_is_strict_and_rerunnable() -> None:
    text = INSTALL_SH.read_text()
    code = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "set -euo pipefail", "strict mode must come before anything runs"
    assert os.access(INSTALL_SH, os.X_OK)
    for variable in ("ROS_DISTRO", "NVIDIA_DRIVER", "FOGROS_WHEEL"):
        assert f"${{{variable}:-}}" in text, f"install.sh does not read {variable}"
    # Appending is what breaks reruns (duplicate apt sources, profile lines); overwrite instead.
    assert not [line for line in code if ">>" in line]
    # The dead-man switch hook point the AWS provider's user-data fills.
    assert "HOOKS=/etc/fogros_dist" in text
    assert 'mkdir -p "$HOOKS"' in text


def _host_codename() -> str:
    fields = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    return fields.get("UBUNTU_CODENAME", fields.get("VERSION_CODENAME", "")).strip('"')


@pytest.fixture
def install_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose first PATH entry stubs every command that changes the machine.

    If a bad input slipped past install.sh's checks, a stub would exit 99 and leave a marker
    instead of installing anything.
    """
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for command in ("apt-get", "curl", "dpkg", "ubuntu-drivers", "modprobe", "python3", "mkdir"):
        stub = stubs / command
        stub.write_text(f'#!/bin/sh\ntouch "{tmp_path}/reached-{command}"\nexit 99\n')
        stub.chmod(0o755)
    wheel = tmp_path / "fogros_dist-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    # A distro whose Ubuntu release this host is not, so even valid input stops at the OS check.
    distro = "jazzy" if _host_codename() == "jammy" else "humble"
    return {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "ROS_DISTRO": distro,
        "NVIDIA_DRIVER": "580",
        "FOGROS_WHEEL": str(wheel),
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ROS_DISTRO": "rolling"}, "ROS_DISTRO must be humble or jazzy, got 'rolling'"),
        ({"ROS_DISTRO": ""}, "ROS_DISTRO must be humble or jazzy, got ''"),
        ({"NVIDIA_DRIVER": "latest"}, "NVIDIA_DRIVER must be a driver branch such as 580, or none"),
        ({"FOGROS_WHEEL": "/nonexistent/fogros_dist.whl"}, "FOGROS_WHEEL: no such file"),
        ({}, "needs Ubuntu"),
    ],
    ids=["unknown-distro", "no-distro", "bad-driver", "missing-wheel", "wrong-os"],
)
def test_install_sh_rejects_bad_input_before_changing_anything(
    install_env: dict[str, str], override: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL_SH)], env=install_env | override, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert not list(tmp_path.glob("reached-*")), "install.sh ran a command before rejecting its input"


def test_install_sh_names_the_release_a_distro_needs(install_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL_SH)], env=install_env, capture_output=True, text=True, check=False
    )
    distro = install_env["ROS_DISTRO"]
    assert f"ROS 2 {distro} needs Ubuntu {DISTROS[distro]}" in result.stderr


# ---------------------------------------------------------------------------------------------
# Packer template
# ---------------------------------------------------------------------------------------------


def test_packer_template_structure(packer: Block) -> None:
    assert {b.type for b in packer.blocks} <= {"packer", "variable", "locals", "source", "build"}
    plugins = packer.only("packer").only("required_plugins").attributes
    assert "github.com/hashicorp/amazon" in plugins["amazon"]
    variables = {b.labels[0] for b in packer.children("variable")}
    required = {"ros_distro", "nvidia_driver", "fogros_wheel", "region", "instance_type", "ami_name_prefix"}
    assert required <= variables
    source = packer.only("source", "amazon-ebs")
    assert packer.only("build").attributes["sources"] == f'["source.amazon-ebs.{source.labels[1]}"]'
    assert source.attributes["region"] == "var.region"
    assert source.attributes["instance_type"] == "var.instance_type"
    assert "var.ami_name_prefix" in packer.only("locals").attributes["ami_name"]


def test_packer_references_only_declared_names(packer: Block) -> None:
    expressions = " ".join(v for block in packer.walk() for v in block.attributes.values())
    variables = {b.labels[0] for b in packer.children("variable")}
    local_names = {name for b in packer.children("locals") for name in b.attributes}
    assert set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", expressions)) <= variables
    assert set(re.findall(r"\blocal\.([A-Za-z_][\w-]*)", expressions)) <= local_names
    assert set(re.findall(r"\blocal\.([A-Za-z_][\w-]*)", expressions)) == local_names, "unused locals"


def test_packer_ros_distro_selects_the_matching_ubuntu(packer: Block) -> None:
    ros_distro = packer.only("variable", "ros_distro")
    condition = ros_distro.only("validation").attributes["condition"]
    assert condition == 'contains(["humble", "jazzy"], var.ros_distro)'
    image_map = hcl_object(packer.only("locals").attributes["ubuntu_image"])
    images = {distro: hcl_string(name) for distro, name in image_map.items()}
    assert set(images) == set(DISTROS)
    for distro, codename in DISTROS.items():
        assert f"/ubuntu-{codename}-" in images[distro]
        assert images[distro].endswith("-amd64-server-*")
    ami_filter = packer.only("source", "amazon-ebs").only("source_ami_filter")
    assert hcl_object(ami_filter.attributes["filters"])["name"] == "local.ubuntu_image[var.ros_distro]"
    assert ami_filter.attributes["owners"] == '["099720109477"]', "Canonical's images only"


def test_packer_tags_the_image(packer: Block) -> None:
    source = packer.only("source", "amazon-ebs")
    tags = hcl_object(source.attributes["tags"])
    assert tags["fogros_dist:image"] == '"gpu-ros2"'
    assert tags["ros_distro"] == "var.ros_distro"


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        ('variable "a" {\n  default = 1\n', "missing its closing"),
        ('variable "a" {\n  default = "x\n}\n', "unterminated string"),
        ("locals {\n  a = [1, 2\n}\n", "mismatched"),
        ("locals {\n  a = 1\n  a = 2\n}\n", "set twice"),
        ("locals {\n  a = 1\n}\n}\n", "unexpected }"),
        ('source "amazon-ebs" {\n  region\n}\n', "neither an attribute"),
        ('locals {\n  a = "${var.x"\n}\n', "unterminated"),
    ],
)
def test_hcl_reader_rejects_malformed_templates(broken: str, error: str) -> None:
    with pytest.raises(HclError, match=error):
        parse_hcl(broken)


def test_packer_template_parses_with_python_hcl2() -> None:
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is not installed; the HCL reader covers syntax")
    loaded = hcl2.loads(PACKER.read_text())
    declared = {b.labels[0] for b in parse_hcl(PACKER.read_text()).children("variable")}
    # python-hcl2 8 keeps a quoted label's quotes ('"region"'); older releases dropped them.
    assert {name.strip('"') for variable in loaded["variable"] for name in variable} == declared


def test_packer_validate_syntax_only() -> None:
    packer_bin = shutil.which("packer")
    if packer_bin is None:
        pytest.skip("packer is not installed")
    version = subprocess.run([packer_bin, "version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"(\d+)\.(\d+)\.\d+", version)
    assert found, version
    if (int(found[1]), int(found[2])) < (1, 7):
        pytest.skip(f"packer {found[0]} predates required_plugins and `packer init` (1.7.0)")
    result = subprocess.run(
        [packer_bin, "validate", "-syntax-only", "-var", "fogros_wheel=fogros_dist.whl", str(PACKER)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
