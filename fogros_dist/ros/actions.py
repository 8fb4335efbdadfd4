"""A ROS 2 action as the services and topics it is made of on the graph.

rcl_action (``rcl_action/src/rcl_action/names.c``, ``default_qos.h``) builds action ``/a`` of
type ``pkg/action/T`` from three services and two topics, each under ``/a/_action/``:

========================  ==================================  ==================================
part                      type                                QoS / bound
========================  ==================================  ==================================
``send_goal`` (service)   ``pkg/action/T_SendGoal``           services default; ``timeout``
``cancel_goal`` (service) ``action_msgs/srv/CancelGoal``      services default; ``timeout``
``get_result`` (service)  ``pkg/action/T_GetResult``          services default; ``result_timeout``
``feedback`` (topic)      ``pkg/action/T_FeedbackMessage``    reliable, volatile, keep last 10
``status`` (topic)        ``action_msgs/msg/GoalStatusArray`` reliable, transient local, last 1
========================  ==================================  ==================================

The bridge carries them as it carries any service or topic: the services from the client's side
to the server's, the topics from the server's side to the client's. An action of type None keeps
the parts whose types it names (``send_goal``, ``get_result``, ``feedback``) untyped, for the
bridge to learn from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from fogros_dist.errors import ConfigError
from fogros_dist.ros.names import validate_topic_name, validate_type_name
from fogros_dist.spec import ActionSpec, QosSpec, ServiceSpec, TopicSpec

__all__ = [
    "CANCEL_GOAL_TYPE",
    "FEEDBACK_QOS",
    "GOAL_STATUS_TYPE",
    "STATUS_QOS",
    "ActionParts",
    "action_parts",
    "validate_action_type",
]

CANCEL_GOAL_TYPE = "action_msgs/srv/CancelGoal"
GOAL_STATUS_TYPE = "action_msgs/msg/GoalStatusArray"
# rmw_qos_profile_default (rcl_action's feedback_topic_qos).
FEEDBACK_QOS = QosSpec(reliability="reliable", durability="volatile", depth=10)
# rcl_action_qos_profile_status_default: a late client still gets the latest status.
STATUS_QOS = QosSpec(reliability="reliable", durability="transient_local", depth=1)
_PREFIX = "/_action/"


@dataclass(frozen=True, kw_only=True)
class ActionParts:
    """The services (client side -> server side) and topics (server side -> client side) of one
    action."""

    services: tuple[ServiceSpec, ...]
    topics: tuple[TopicSpec, ...]


def validate_action_type(type_name: str) -> str:
    """Check that ``type_name`` is ``pkg/action/Type``; return it.

    Raises:
        ConfigError: another shape, or another interface kind.
    """
    validate_type_name(type_name)
    if type_name.split("/")[1] != "action":
        msg = f"action type {type_name!r} is not an action type: use 'package/action/Type'"
        raise ConfigError(msg)
    return type_name


def action_parts(action: ActionSpec) -> ActionParts:
    """The services and topics that make ``action`` on a graph.

    Raises:
        InvalidTopicName: the action name is not a valid absolute name.
        ConfigError: the type is not ``pkg/action/Type``.
    """
    validate_topic_name(action.name)
    if action.type is not None:
        validate_action_type(action.type)
    base = f"{action.name}{_PREFIX}"

    def typed(suffix: str) -> str | None:
        return None if action.type is None else f"{action.type}_{suffix}"

    services = (
        ServiceSpec(name=f"{base}send_goal", type=typed("SendGoal"), timeout=action.timeout),
        ServiceSpec(name=f"{base}cancel_goal", type=CANCEL_GOAL_TYPE, timeout=action.timeout),
        ServiceSpec(name=f"{base}get_result", type=typed("GetResult"), timeout=action.result_timeout),
    )
    topics = (
        TopicSpec(name=f"{base}feedback", type=typed("FeedbackMessage"), qos=FEEDBACK_QOS, codec="none"),
        TopicSpec(name=f"{base}status", type=GOAL_STATUS_TYPE, qos=STATUS_QOS, codec="none"),
    )
    return ActionParts(services=services, topics=topics)
