"""A lab's own interface package, as a test writes it: ``lab_msgs`` (ament_cmake) with two
messages (one nesting the other and ``std_msgs/Header``), a service and an action; as a source
package in a colcon workspace, as an ament install tree, or as the ``.idl`` files rosidl_adapter
generates. Imported by the interface tests (a plain module: conftest files cannot be imported).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "lab_msgs"
DETECTION = "lab_msgs/msg/Detection"
BOX = "lab_msgs/msg/BoundingBox"
LOCATE = "lab_msgs/srv/Locate"
TRACK = "lab_msgs/action/Track"

PACKAGE_XML = """\
<?xml version="1.0"?>
<package format="3">
  <name>lab_msgs</name>
  <version>0.1.0</version>
  <description>A lab's own interfaces</description>
  <maintainer email="lab@example.org">lab</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>action_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.8)
project(lab_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(action_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME}
  "msg/BoundingBox.msg" "msg/Detection.msg" "srv/Locate.srv" "action/Track.action"
  DEPENDENCIES std_msgs action_msgs)
ament_package()
"""

FILES = {
    "msg/BoundingBox.msg": "# pixels\nfloat32 x\nfloat32 y\nfloat32 width\nfloat32 height\n",
    "msg/Detection.msg": (
        "uint8 KIND_PERSON=1\nstd_msgs/Header header\nBoundingBox box\nstring label\nfloat32 score\n"
    ),
    "srv/Locate.srv": "string label\n---\nbool found\nDetection detection\n",
    "action/Track.action": "string label\nuint32 max_frames\n---\nuint32 frames\n---\nDetection latest\n",
}

# What rosidl_adapter writes for the two messages (share/<pkg>/msg/*.idl of an install).
IDL_FILES = {
    "msg/BoundingBox.idl": """\
// generated from rosidl_adapter/resource/msg.idl.em
// with input from lab_msgs/msg/BoundingBox.msg
// generated code does not contain a copyright notice


module lab_msgs {
  module msg {
    @verbatim (language="comment", text=
      "pixels")
    struct BoundingBox {
      float x;

      float y;

      float width;

      float height;
    };
  };
};
""",
    "msg/Detection.idl": """\
// generated from rosidl_adapter/resource/msg.idl.em
// with input from lab_msgs/msg/Detection.msg
// generated code does not contain a copyright notice

#include "lab_msgs/msg/BoundingBox.idl"
#include "std_msgs/msg/Header.idl"

module lab_msgs {
  module msg {
    module Detection_Constants {
      const uint8 KIND_PERSON = 1;
    };
    struct Detection {
      std_msgs::msg::Header header;

      lab_msgs::msg::BoundingBox box;

      string label;

      float score;
    };
  };
};
""",
}


def source_package(src: Path, *, files: dict[str, str] | None = None) -> Path:
    """``src/lab_msgs`` as a user keeps it in a colcon workspace; returns the package directory."""
    package = src / PACKAGE
    for rel, text in {"package.xml": PACKAGE_XML, "CMakeLists.txt": CMAKELISTS, **(files or FILES)}.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


def install_prefix(prefix: Path, *, files: dict[str, str] | None = None) -> Path:
    """An ament install prefix holding ``share/lab_msgs/...`` (as colcon installs an interface
    package: package.xml and the definition files); returns the prefix."""
    share = prefix / "share" / PACKAGE
    for rel, text in {"package.xml": PACKAGE_XML, **(files or FILES)}.items():
        (share / rel).parent.mkdir(parents=True, exist_ok=True)
        (share / rel).write_text(text)
    return prefix
