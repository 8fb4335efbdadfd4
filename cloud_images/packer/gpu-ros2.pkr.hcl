# fogros_dist GPU AMI: Ubuntu + ROS 2 + NVIDIA driver + torch + fogros_dist, installed by
# ../scripts/install.sh (the script the cloud-init and Docker variants run too).
#
#   pip wheel --no-deps -w build/wheels .            # from the repository root
#   packer init cloud_images/packer/gpu-ros2.pkr.hcl
#   packer build -var ros_distro=jazzy -var fogros_wheel=build/wheels/fogros_dist-0.1.0-py3-none-any.whl \
#     cloud_images/packer/gpu-ros2.pkr.hcl

packer {
  # required_plugins and `packer init` arrived in Packer 1.7.0.
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
  }
}

variable "ros_distro" {
  type        = string
  default     = "jazzy"
  description = "ROS 2 distribution: humble builds on Ubuntu 22.04, jazzy on Ubuntu 24.04."
  validation {
    condition     = contains(["humble", "jazzy"], var.ros_distro)
    error_message = "The ros_distro variable must be humble or jazzy."
  }
}

variable "nvidia_driver" {
  type        = string
  default     = "580"
  description = "NVIDIA server driver branch (nvidia:<branch>-server); torch's CUDA wheels need a recent one."
}

variable "fogros_wheel" {
  type        = string
  description = "Path of the fogros_dist wheel built with `pip wheel --no-deps -w build/wheels .`."
}

variable "region" {
  type    = string
  default = "us-west-2"
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Other regions to copy the finished AMI to."
}

variable "instance_type" {
  type        = string
  default     = "g4dn.xlarge"
  description = "Build machine; it needs an NVIDIA GPU so the driver's kernel module loads during the build."
}

variable "ami_name_prefix" {
  type    = string
  default = "fogros-dist"
}

variable "volume_size_gb" {
  type        = number
  default     = 40
  description = "Root volume: torch's CUDA wheels alone take several GB."
}

locals {
  # Canonical's official images (owner 099720109477); Noble's names moved to hvm-ssd-gp3.
  ubuntu_image = {
    humble = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"
    jazzy  = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
  }
  wheel_on_machine = "/tmp/${basename(var.fogros_wheel)}"
  ami_name         = "${var.ami_name_prefix}-${var.ros_distro}-${formatdate("YYYYMMDD-hhmmss", timestamp())}"
}

source "amazon-ebs" "gpu" {
  region        = var.region
  ami_regions   = var.ami_regions
  instance_type = var.instance_type
  ami_name      = local.ami_name
  ssh_username  = "ubuntu"
  # The temporary security group admits SSH from this machine's public address only.
  temporary_security_group_source_public_ip = true

  source_ami_filter {
    filters = {
      name                = local.ubuntu_image[var.ros_distro]
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size_gb
    volume_type           = "gp3"
    delete_on_termination = true
  }

  # Tags let the AWS provider (and `aws ec2 describe-images --filters`) find these images by kind
  # and ROS distro.
  tags = {
    Name                = local.ami_name
    "fogros_dist:image" = "gpu-ros2"
    ros_distro          = var.ros_distro
    nvidia_driver       = var.nvidia_driver
    source_ami_name     = "{{ .SourceAMIName }}"
  }
  snapshot_tags = {
    "fogros_dist:image" = "gpu-ros2"
    ros_distro          = var.ros_distro
  }
  run_tags = {
    Name = "fogros_dist image build (${var.ros_distro})"
  }
}

build {
  sources = ["source.amazon-ebs.gpu"]

  # Stock Ubuntu runs cloud-init (and apt) on first boot: let it finish before installing.
  # Exit code 2 means "done, with recoverable warnings" on newer cloud-init.
  provisioner "shell" {
    inline = ["cloud-init status --wait >/dev/null || test $? -eq 2"]
  }

  provisioner "file" {
    source      = var.fogros_wheel
    destination = local.wheel_on_machine
  }

  provisioner "shell" {
    script = "${path.root}/../scripts/install.sh"
    environment_vars = [
      "ROS_DISTRO=${var.ros_distro}",
      "NVIDIA_DRIVER=${var.nvidia_driver}",
      "FOGROS_WHEEL=${local.wheel_on_machine}",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
  }

  provisioner "shell" {
    inline = ["rm -f ${local.wheel_on_machine}"]
  }

  # packer-manifest.json records the AMI id(s), for the AWS provider's `ami` option.
  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
