"""Services and actions across the bridge on real parts: two Cyclone DDS graphs on two domains,
two Zenoh sessions on loopback TCP, a ServiceBridge (and for actions the topic Bridge) per side.

The robot's application calls on the robot's domain; the only way a call reaches the machine's
server is robot bridge -> Zenoh query -> machine bridge -> machine's graph, and back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import zenoh
from net_test_helpers import DEPLOYMENT, TIMEOUT, Inbox, free_tcp_port, wait_for

from fogros_dist.errors import ConfigError
from fogros_dist.net.bridge import Bridge
from fogros_dist.net.ros2dds_keys import token_pattern
from fogros_dist.net.service_bridge import ServiceBridge
from fogros_dist.net.zenoh_config import config_for
from fogros_dist.ros.actions import STATUS_QOS, action_parts
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.graph import ServiceResponder
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import ActionSpec, BridgeRunSpec, ServiceSpec, TopicSpec

ADD_TWO_INTS = "example_interfaces/srv/AddTwoInts"
REQUEST = f"{ADD_TWO_INTS}_Request"
RESPONSE = f"{ADD_TWO_INTS}_Response"
FIBONACCI = "example_interfaces/action/Fibonacci"


@dataclass
class ServiceSide:
    spec: BridgeRunSpec
    app: DdsGraph
    session: zenoh.Session
    services: ServiceBridge
    topics: Bridge | None


@dataclass
class ServiceLink:
    robot: ServiceSide
    machine: ServiceSide


@pytest.fixture
def types() -> MessageTypes:
    # The stock srv/action definitions fogros_dist ships (ros/stock_interfaces) cover these.
    found = MessageTypes("jazzy")
    for name in (REQUEST, RESPONSE, f"{FIBONACCI}_SendGoal_Request", "action_msgs/srv/CancelGoal_Request"):
        found.resolve(name)
    return found


@pytest.fixture
def service_link(
    new_domain_id: Callable[[], int], types: MessageTypes
) -> Iterator[Callable[..., ServiceLink]]:
    """``service_link(robot_remote=..., machine_local=..., ...)``: both sides running."""
    closers: list[Callable[[], None]] = []

    def make(
        *,
        robot_remote: Sequence[ServiceSpec] = (),
        machine_local: Sequence[ServiceSpec] = (),
        robot_local: Sequence[ServiceSpec] = (),
        machine_remote: Sequence[ServiceSpec] = (),
        robot_in: Sequence[TopicSpec] = (),
        machine_out: Sequence[TopicSpec] = (),
        max_calls: int = 64,
    ) -> ServiceLink:
        endpoint = f"tcp/127.0.0.1:{free_tcp_port()}"
        machine_spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="machine",
            machine="gpu",
            listen=(endpoint,),
            outbound=tuple(machine_out),
            local_services=tuple(machine_local),
            remote_services=tuple(machine_remote),
            domain_id=new_domain_id(),
            graph="dds",
        )
        robot_spec = BridgeRunSpec(
            deployment=DEPLOYMENT,
            side="robot",
            machine="robot",
            connect=(endpoint,),
            inbound=tuple(robot_in),
            remote_services=tuple(robot_remote),
            local_services=tuple(robot_local),
            service_machines=tuple((s.name, "gpu") for s in robot_remote),
            domain_id=new_domain_id(),
            graph="dds",
        )
        machine = _side(machine_spec, types, closers, max_calls)
        robot = _side(robot_spec, types, closers, max_calls)
        return ServiceLink(robot=robot, machine=machine)

    yield make
    for close in reversed(closers):
        close()


def _side(
    spec: BridgeRunSpec, types: MessageTypes, closers: list[Callable[[], None]], max_calls: int
) -> ServiceSide:
    graph = DdsGraph(spec.domain_id, types=types)
    closers.append(graph.close)
    app = DdsGraph(spec.domain_id, types=types)
    closers.append(app.close)
    session = zenoh.open(config_for(spec))
    closers.append(session.close)  # type: ignore[arg-type]
    topics = None
    if spec.inbound or spec.outbound:
        topics = Bridge(spec=spec, graph=graph, session=session)
        closers.append(topics.close)
        topics.start(peer_timeout=TIMEOUT)
    services = ServiceBridge(spec=spec, graph=graph, session=session, max_calls=max_calls)
    closers.append(services.close)
    services.start()
    return ServiceSide(spec=spec, app=app, session=session, services=services, topics=topics)


def _announced(side: ServiceSide, name: str) -> Callable[[], bool]:
    """True once ``side``'s session sees the far side's server token of ``name`` (the queryable
    is declared before it, so a call then reaches the far side)."""
    seen = threading.Event()
    side.session.liveliness().declare_subscriber(
        token_pattern("SS", name),
        lambda s: seen.set() if s.kind == zenoh.SampleKind.PUT else None,
        history=True,
    )
    return seen.is_set


def request(types: MessageTypes, a: int, b: int) -> bytes:
    return types.serialize(REQUEST, types.message_class(REQUEST)(a=a, b=b))


def total(types: MessageTypes, reply: bytes | None) -> int:
    assert reply is not None, "no reply"
    return int(types.deserialize(RESPONSE, reply).sum)


def adder(types: MessageTypes, *, delay: float = 0.0) -> Callable[[bytes, ServiceResponder], None]:
    """A server handler answering a + b, after ``delay`` seconds on a thread of its own."""

    def answer(cdr: bytes, respond: ServiceResponder) -> None:
        message = types.deserialize(REQUEST, cdr)
        time.sleep(delay)
        respond(types.serialize(RESPONSE, types.message_class(RESPONSE)(sum=message.a + message.b)))

    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        if delay:
            threading.Thread(target=answer, args=(cdr, respond), daemon=True).start()
        else:
            answer(cdr, respond)

    return handle


def stats_of(side: ServiceSide, name: str) -> dict[str, Any]:
    (entry,) = [s for s in side.services.snapshot() if s["service"] == name]
    return entry


def test_call_crosses_both_ways_byte_exact_and_is_counted(
    service_link: Callable[..., ServiceLink], types: MessageTypes
) -> None:
    add = ServiceSpec(name="/add", type=ADD_TWO_INTS)
    link = service_link(robot_remote=[add], machine_local=[add])
    seen: list[bytes] = []

    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        seen.append(cdr)
        adder(types)(cdr, respond)

    link.machine.app.service_server(add, handle)
    assert wait_for(_announced(link.robot, "/add"))
    client = link.robot.app.service_client(add)
    assert wait_for(client.server_ready)
    for a, b in ((1, 2), (-10, 2**40), (0, 0)):
        assert total(types, client.call(request(types, a, b), TIMEOUT)) == a + b
    assert seen[-1] == request(types, 0, 0)  # the request crossed byte for byte
    # Each side counts a call once its reply is sent on, which may be after the caller got it.
    assert wait_for(lambda: stats_of(link.machine, "/add")["answered"] == 3)
    assert wait_for(lambda: stats_of(link.robot, "/add")["answered"] == 3)
    robot, machine = stats_of(link.robot, "/add"), stats_of(link.machine, "/add")
    assert (robot["role"], machine["role"]) == ("remote", "local")
    for entry in (robot, machine):
        assert entry["calls"] == entry["answered"] == 3
        assert entry["timed_out"] == entry["errors"] == entry["in_flight"] == 0
        assert entry["latency_ms"]["samples"] == 3
        assert 0 < entry["latency_ms"]["median"] < 1000
    # The robot's latency includes the machine's: it is the whole round trip.
    assert robot["latency_ms"]["max"] >= machine["latency_ms"]["median"]


def test_service_from_machine_to_robot(service_link: Callable[..., ServiceLink], types: MessageTypes) -> None:
    add = ServiceSpec(name="/robot/add", type=ADD_TWO_INTS)
    link = service_link(robot_local=[add], machine_remote=[add])
    link.robot.app.service_server(add, adder(types))
    assert wait_for(_announced(link.machine, "/robot/add"))
    client = link.machine.app.service_client(add)
    assert wait_for(client.server_ready)
    assert total(types, client.call(request(types, 20, 22), TIMEOUT)) == 42


def test_no_reply_within_the_timeout_is_one_line_and_no_answer(
    service_link: Callable[..., ServiceLink], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    slow = ServiceSpec(name="/slow", type=ADD_TWO_INTS, timeout=0.5)
    link = service_link(robot_remote=[slow])
    # A far side that takes the query and never answers (a stalled machine bridge).
    held: list[zenoh.Query] = []
    queryable = link.machine.session.declare_queryable("slow", held.append)
    client = link.robot.app.service_client(slow)
    assert wait_for(client.server_ready)
    caplog.set_level(logging.WARNING, logger="fogros_dist.net.service_bridge")
    started = time.monotonic()
    assert client.call(request(types, 1, 1), 2.0) is None
    assert time.monotonic() - started >= 2.0
    assert wait_for(lambda: stats_of(link.robot, "/slow")["timed_out"] == 1)
    assert len(held) == 1
    assert held[0].payload is not None
    assert held[0].payload.to_bytes() == request(types, 1, 1)  # the request CDR, as it is
    lines = [r.getMessage() for r in caplog.records]
    want = (
        "service /slow: no reply from machine gpu within 0.5 s (the service's timeout); "
        "the caller gets no answer"
    )
    assert lines == [want]
    assert stats_of(link.robot, "/slow")["answered"] == 0
    queryable.undeclare()


def test_slow_server_is_an_error_reply_naming_why(
    service_link: Callable[..., ServiceLink], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    slow = ServiceSpec(name="/slow", type=ADD_TWO_INTS, timeout=0.5)
    link = service_link(robot_remote=[slow], machine_local=[slow])
    link.machine.app.service_server(slow, lambda cdr, respond: None)  # never answers
    assert wait_for(_announced(link.robot, "/slow"))
    client = link.robot.app.service_client(slow)
    assert wait_for(client.server_ready)
    caplog.set_level(logging.WARNING, logger="fogros_dist.net.service_bridge")
    assert client.call(request(types, 1, 1), 2.0) is None
    assert wait_for(lambda: stats_of(link.robot, "/slow")["errors"] == 1)
    assert stats_of(link.machine, "/slow")["timed_out"] == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "service /slow did not answer on machine gpu within 0.45 s",
        "service /slow: machine gpu answered with an error (service /slow did not answer on machine gpu "
        "within 0.45 s); the caller gets no answer",
    ]


def test_absent_server_is_an_error_reply_logged_on_both_sides(
    service_link: Callable[..., ServiceLink], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    absent = ServiceSpec(name="/absent", type=ADD_TWO_INTS, timeout=1.0)
    link = service_link(robot_remote=[absent], machine_local=[absent])
    assert wait_for(_announced(link.robot, "/absent"))
    caplog.set_level(logging.WARNING, logger="fogros_dist.net.service_bridge")
    client = link.robot.app.service_client(absent)
    assert wait_for(client.server_ready)  # the robot bridge serves it on the robot's graph
    assert client.call(request(types, 1, 1), 3.0) is None
    assert wait_for(lambda: stats_of(link.robot, "/absent")["errors"] == 1)
    lines = "\n".join(r.getMessage() for r in caplog.records)
    assert "service /absent has no server on machine gpu within 0.9 s" in lines
    assert "service /absent: machine gpu answered with an error (service /absent has no server" in lines
    assert stats_of(link.machine, "/absent")["timed_out"] == 1


def test_calls_run_concurrently(service_link: Callable[..., ServiceLink], types: MessageTypes) -> None:
    add = ServiceSpec(name="/add", type=ADD_TWO_INTS)
    link = service_link(robot_remote=[add], machine_local=[add])
    link.machine.app.service_server(add, adder(types, delay=1.0))
    assert wait_for(_announced(link.robot, "/add"))
    client = link.robot.app.service_client(add)
    assert wait_for(client.server_ready)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.call(request(types, i, 1), TIMEOUT), range(8)))
    elapsed = time.monotonic() - started
    assert [total(types, r) for r in replies] == [i + 1 for i in range(8)]
    # One after another they would take 8 s; together about the server's 1 s.
    assert elapsed < 3.0, f"8 calls of 1 s took {elapsed:.1f} s"
    assert stats_of(link.machine, "/add")["answered"] == 8


def test_calls_beyond_max_calls_are_refused_not_queued(
    service_link: Callable[..., ServiceLink], types: MessageTypes
) -> None:
    add = ServiceSpec(name="/add", type=ADD_TWO_INTS)
    link = service_link(robot_remote=[add], machine_local=[add], max_calls=2)
    link.machine.app.service_server(add, adder(types, delay=1.0))
    assert wait_for(_announced(link.robot, "/add"))
    client = link.robot.app.service_client(add)
    assert wait_for(client.server_ready)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: client.call(request(types, i, 1), 3.0), range(4)))
    assert sum(r is not None for r in replies) == 2
    machine = stats_of(link.machine, "/add")
    assert (machine["answered"], machine["errors"]) == (2, 2)


def test_untyped_service_is_learned_where_the_server_is(
    service_link: Callable[..., ServiceLink], types: MessageTypes
) -> None:
    untyped = ServiceSpec(name="/add")
    link = service_link(robot_remote=[untyped], machine_local=[untyped])
    assert stats_of(link.robot, "/add")["type"] is None
    typed = ServiceSpec(name="/add", type=ADD_TWO_INTS)
    link.machine.app.service_server(typed, adder(types))
    # Machine bridge: discover_service_type -> client + queryable + SS token; robot: serves it.
    assert wait_for(lambda: stats_of(link.robot, "/add")["type"] == ADD_TWO_INTS, 10.0)
    assert stats_of(link.machine, "/add")["type"] == ADD_TWO_INTS
    client = link.robot.app.service_client(typed)
    assert wait_for(client.server_ready)
    assert total(types, client.call(request(types, 2, 3), TIMEOUT)) == 5


def test_bad_specs_fail_in_one_line(new_domain_id: Callable[[], int], types: MessageTypes) -> None:
    add = ServiceSpec(name="/add", type=ADD_TWO_INTS)
    base = BridgeRunSpec(deployment=DEPLOYMENT, side="robot", machine="robot", graph="dds")
    cases = [
        (BridgeRunSpec(**{**base.__dict__, "remote_services": (add, add)}), "listed twice as remote"),
        (
            BridgeRunSpec(
                **{**base.__dict__, "remote_services": (add,), "service_owners": (("/x", ("/n",)),)}
            ),
            "service_owners names service /x, which is not a remote service",
        ),
        (
            BridgeRunSpec(
                **{**base.__dict__, "remote_services": (add,), "service_owners": (("/add", ("/n",)),)}
            ),
            "the node /n, which is not in proxy_nodes",
        ),
        (BridgeRunSpec(**{**base.__dict__, "local_services": (ServiceSpec(name="bad name"),)}), "bad name"),
    ]
    for spec, match in cases:
        with pytest.raises(ConfigError, match=match):
            ServiceBridge(spec=spec, graph=None, session=None)  # type: ignore[arg-type]


# -- an action: three services and two topics, at the DDS level --------------------------------


def test_action_goal_feedback_and_result_cross(  # noqa: PLR0915  (one scenario, end to end)
    service_link: Callable[..., ServiceLink], types: MessageTypes
) -> None:
    action = ActionSpec(name="/fibonacci", type=FIBONACCI, timeout=5.0, result_timeout=10.0)
    parts = action_parts(action)
    link = service_link(
        robot_remote=parts.services,
        machine_local=parts.services,
        robot_in=parts.topics,
        machine_out=parts.topics,
    )
    send_goal, cancel_goal, get_result = parts.services
    feedback_topic, status_topic = parts.topics
    t = types
    uuid_cls = t.message_class("unique_identifier_msgs/msg/UUID")
    time_cls = t.message_class("builtin_interfaces/msg/Time")
    goal_id = uuid_cls(uuid=np.arange(16, dtype="uint8"))

    # The machine's action server: accepts, publishes feedback, then answers get_result.
    feedback_pub = link.machine.app.publisher(feedback_topic)
    goal_order: list[int] = []
    accepted = threading.Event()

    def on_goal(cdr: bytes, respond: ServiceResponder) -> None:
        goal = t.deserialize(f"{FIBONACCI}_SendGoal_Request", cdr)
        goal_order.append(int(goal.goal.order))
        reply = t.message_class(f"{FIBONACCI}_SendGoal_Response")(
            accepted=True, stamp=time_cls(sec=1, nanosec=0)
        )
        respond(t.serialize(f"{FIBONACCI}_SendGoal_Response", reply))
        accepted.set()

    def on_result(cdr: bytes, respond: ServiceResponder) -> None:
        def run() -> None:
            sequence = [0, 1]
            for _ in range(3):
                sequence.append(sequence[-1] + sequence[-2])
                feedback = t.message_class(f"{FIBONACCI}_Feedback")(
                    sequence=np.array(sequence, dtype="int32")
                )
                message = t.message_class(f"{FIBONACCI}_FeedbackMessage")(goal_id=goal_id, feedback=feedback)
                feedback_pub.publish(t.serialize(f"{FIBONACCI}_FeedbackMessage", message))
                time.sleep(0.1)
            result = t.message_class(f"{FIBONACCI}_Result")(sequence=np.array(sequence, dtype="int32"))
            reply = t.message_class(f"{FIBONACCI}_GetResult_Response")(status=4, result=result)
            respond(t.serialize(f"{FIBONACCI}_GetResult_Response", reply))

        threading.Thread(target=run, daemon=True).start()

    link.machine.app.service_server(send_goal, on_goal)
    link.machine.app.service_server(get_result, on_result)

    # The robot's action client.
    feedback = Inbox()
    subscription = link.robot.app.subscribe(feedback_topic, feedback)
    goal_client = link.robot.app.service_client(send_goal)
    result_client = link.robot.app.service_client(get_result)
    assert wait_for(_announced(link.robot, send_goal.name))
    assert wait_for(_announced(link.robot, get_result.name))
    assert wait_for(lambda: goal_client.server_ready() and result_client.server_ready())
    assert wait_for(lambda: subscription.matched_count() >= 1)
    assert wait_for(lambda: feedback_pub.matched_count() >= 1)
    goal = t.message_class(f"{FIBONACCI}_Goal")(order=5)
    send = t.message_class(f"{FIBONACCI}_SendGoal_Request")(goal_id=goal_id, goal=goal)
    answer = goal_client.call(t.serialize(f"{FIBONACCI}_SendGoal_Request", send), TIMEOUT)
    assert answer is not None
    assert t.deserialize(f"{FIBONACCI}_SendGoal_Response", answer).accepted
    assert goal_order == [5]
    ask = t.message_class(f"{FIBONACCI}_GetResult_Request")(goal_id=goal_id)
    result_cdr = result_client.call(t.serialize(f"{FIBONACCI}_GetResult_Request", ask), TIMEOUT)
    assert result_cdr is not None
    result = t.deserialize(f"{FIBONACCI}_GetResult_Response", result_cdr)
    assert (result.status, list(result.result.sequence)) == (4, [0, 1, 1, 2, 3])
    seen = [
        list(t.deserialize(f"{FIBONACCI}_FeedbackMessage", feedback.get()).feedback.sequence)
        for _ in range(3)
    ]
    assert seen == [[0, 1, 1], [0, 1, 1, 2], [0, 1, 1, 2, 3]]
    assert cancel_goal.type == "action_msgs/srv/CancelGoal"
    assert status_topic.qos == STATUS_QOS
