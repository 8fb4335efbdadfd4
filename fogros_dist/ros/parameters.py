"""A node's parameter services: what ``ros2 param list/get/set/describe`` call.

rclcpp and rclpy give every node (unless started with ``start_parameter_services=False``) six
services under its full name, all of ``rcl_interfaces/srv/*`` (rclcpp ``parameter_service.cpp``,
rclpy ``parameter_service.py``). Bridged, they let the robot's ``ros2 param`` reach a node that
runs on another machine.
"""

from __future__ import annotations

from fogros_dist.ros.node_names import full_node_name
from fogros_dist.spec import ServiceSpec

__all__ = ["PARAMETER_SERVICES", "parameter_services"]

# (service name under the node, type), as rclcpp's ParameterService declares them.
PARAMETER_SERVICES = (
    ("describe_parameters", "rcl_interfaces/srv/DescribeParameters"),
    ("get_parameter_types", "rcl_interfaces/srv/GetParameterTypes"),
    ("get_parameters", "rcl_interfaces/srv/GetParameters"),
    ("list_parameters", "rcl_interfaces/srv/ListParameters"),
    ("set_parameters", "rcl_interfaces/srv/SetParameters"),
    ("set_parameters_atomically", "rcl_interfaces/srv/SetParametersAtomically"),
)


def parameter_services(*, namespace: str, name: str, timeout: float = 10.0) -> tuple[ServiceSpec, ...]:
    """The parameter services of node ``name`` in ``namespace`` ("" is the root namespace).

    Raises:
        ConfigError: the node name or namespace breaks ROS 2's rules.
    """
    full = full_node_name(namespace=namespace, name=name)
    return tuple(
        ServiceSpec(name=f"{full}/{service}", type=t, timeout=timeout) for service, t in PARAMETER_SERVICES
    )
