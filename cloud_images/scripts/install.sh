#!/usr/bin/env bash
# Turns a stock Ubuntu machine into a fogros_dist GPU machine: ROS 2 with Cyclone DDS, the NVIDIA
# driver, a Python venv with torch and fogros_dist's pinned requirements, and fogros_dist itself.
# The Packer AMI, the cloud-init user-data and the Dockerfile all run this one script, so the
# three images cannot drift. Safe to run again: every step converges to the same state.
#
# Environment:
#   ROS_DISTRO     humble (Ubuntu 22.04 jammy) or jazzy (Ubuntu 24.04 noble)
#   NVIDIA_DRIVER  a server driver branch such as 580, or "none" (containers use the host's driver)
#   FOGROS_WHEEL   path or http(s) URL of a fogros_dist wheel; empty: install fogros_dist later
set -euo pipefail

# fogros_dist's runtime requirements, copied from requirements.txt by cloud_images/render.py
# (test/cloud_images fails on any difference). Here torch's pin resolves to PyPI's CUDA build.
PINS=(
  cyclonedds==11.0.1
  eclipse-zenoh==1.10.2
  rosbags==0.11.9
  'numpy==2.4.6; python_version >= "3.11"'
  'numpy==2.2.6; python_version < "3.11"'
  'tomli==2.2.1; python_version < "3.11"'
  catkin-pkg==1.1.1
  packaging==26.3
  simplejpeg==1.9.0
  zstandard==0.25.0
  paramiko==5.1.0
  cryptography==50.0.2
  boto3==1.44.5
  torch==2.13.0
  kiss-icp==1.3.0
  'matplotlib==3.11.2; python_version >= "3.11"'
  'matplotlib==3.10.9; python_version < "3.11"'
  'pillow==13.0.0; python_version >= "3.11"'
  'pillow==12.3.0; python_version < "3.11"'
)
PREFIX=/opt/fogros_dist
VENV="$PREFIX/venv"
HOOKS=/etc/fogros_dist

die() {
  echo "install.sh: $*" >&2
  exit 1
}
step() { echo "install.sh: $*"; }

# Check every input before the first change, so a bad call leaves the machine untouched.
ROS_DISTRO="${ROS_DISTRO:-}"
NVIDIA_DRIVER="${NVIDIA_DRIVER:-}"
FOGROS_WHEEL="${FOGROS_WHEEL:-}"
case "$ROS_DISTRO" in
  humble) UBUNTU=jammy ;;
  jazzy) UBUNTU=noble ;;
  *) die "ROS_DISTRO must be humble or jazzy, got '$ROS_DISTRO'" ;;
esac
[[ "$NVIDIA_DRIVER" == none || "$NVIDIA_DRIVER" =~ ^[0-9]{3,4}$ ]] ||
  die "NVIDIA_DRIVER must be a driver branch such as 580, or none; got '$NVIDIA_DRIVER'"
if [[ -n "$FOGROS_WHEEL" && ! "$FOGROS_WHEEL" =~ ^https?:// && ! -f "$FOGROS_WHEEL" ]]; then
  die "FOGROS_WHEEL: no such file: $FOGROS_WHEEL"
fi
# shellcheck source=/dev/null
codename="$(. /etc/os-release && echo "${UBUNTU_CODENAME:-${VERSION_CODENAME:-unknown}}")"
[[ "$codename" == "$UBUNTU" ]] ||
  die "ROS 2 $ROS_DISTRO needs Ubuntu $UBUNTU; this machine runs '$codename'"
[[ "$(id -u)" -eq 0 ]] || die "run as root (sudo)"

export DEBIAN_FRONTEND=noninteractive
# On a first boot unattended-upgrades may hold the dpkg lock: wait for it instead of failing.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"; }

step "ROS 2 $ROS_DISTRO from packages.ros.org"
apt_get update
apt_get install --no-install-recommends ca-certificates curl python3-venv
# ros:<distro> container images already carry the repository; a second entry with another keyring
# would make apt refuse both.
if ! grep -rqs 'packages.ros.org/ros2/' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  curl -fsSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key \
    -o /usr/share/keyrings/ros-archive-keyring.gpg
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/ros-archive-keyring.gpg]" \
    "http://packages.ros.org/ros2/ubuntu $UBUNTU main" >/etc/apt/sources.list.d/ros2.list
  apt_get update
fi
apt_get install --no-install-recommends "ros-$ROS_DISTRO-ros-base" "ros-$ROS_DISTRO-rmw-cyclonedds-cpp"

if [[ "$NVIDIA_DRIVER" != none ]]; then
  step "NVIDIA driver $NVIDIA_DRIVER-server"
  apt_get install --no-install-recommends ubuntu-drivers-common
  # ubuntu-drivers installs the headless server driver with Canonical's prebuilt, signed kernel
  # modules for this kernel flavour (aws, generic): no DKMS build, no missing kernel headers.
  ubuntu-drivers install --gpgpu "nvidia:$NVIDIA_DRIVER-server"
  apt_get install --no-install-recommends "nvidia-utils-$NVIDIA_DRIVER-server"
  modprobe nvidia || step "nvidia kernel module not loaded now; it loads on the next boot"
fi

step "Python venv $VENV: torch and fogros_dist's pinned requirements"
mkdir -p "$PREFIX"
printf '%s\n' "${PINS[@]}" >"$PREFIX/requirements.txt"
# --system-site-packages: rclpy (from /opt/ros) needs its apt-installed Python dependencies; the
# venv's pinned packages still come first on sys.path.
[[ -x "$VENV/bin/python" ]] || python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check -r "$PREFIX/requirements.txt"
if [[ -n "$FOGROS_WHEEL" ]]; then
  step "fogros_dist from $FOGROS_WHEEL"
  # --no-deps: its dependencies are the pins above; --force-reinstall: a rebuilt wheel of the same
  # version replaces the installed one.
  "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check --no-deps --force-reinstall \
    "$FOGROS_WHEEL"
else
  step "FOGROS_WHEEL is empty: fogros_dist itself is not installed (pip install its wheel into $VENV)"
fi

# The dead-man switch hook point: the AWS provider's user-data writes its files here at launch.
mkdir -p "$HOOKS"
chmod 0755 "$HOOKS"
cat >/etc/profile.d/fogros_dist.sh <<PROFILE
# fogros_dist image: ROS 2 $ROS_DISTRO with Cyclone DDS and the fogros_dist venv in login shells.
. /opt/ros/$ROS_DISTRO/setup.sh
export RMW_IMPLEMENTATION=rmw_cyclonedds_cpp
export PATH="$VENV/bin:\$PATH"
PROFILE
apt-get clean

# Written last: its presence tells a provider (or a user waiting on cloud-init) that the machine
# is ready and which image it carries.
fogros_version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("fogros_dist"))' \
  2>/dev/null || echo none)"
cat >"$PREFIX/image.env" <<IMAGE
FOGROS_IMAGE=gpu-ros2
ROS_DISTRO=$ROS_DISTRO
NVIDIA_DRIVER=$NVIDIA_DRIVER
FOGROS_DIST=$fogros_version
IMAGE
step "done: $PREFIX/image.env"
