"""Services between the graph adapters and real ROS 2: ``ros2 service call``, rclpy clients and
servers, ``ros2 service list`` and ``ros2 node info``.

Needs a sourced ROS 2 with rmw_cyclonedds_cpp (and example_interfaces, std_srvs); skipped
without rclpy. DDS stays on loopback (the session's CYCLONEDDS_URI, which rmw reads too).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from ros_graph_view import ros2_until
from ros_test_helpers import TIMEOUT
from service_types import ADD_TWO_INTS, SET_BOOL, register_srv

from fogros_dist.errors import BridgeError
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.graph import ServiceResponder
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import ServiceSpec

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from fogros_dist.ros.rclpy_graph import RclpyGraph  # noqa: E402  (after the skip)

ADD = ServiceSpec(name="/add_two_ints", type=ADD_TWO_INTS)
SWITCH = ServiceSpec(name="/switch", type=SET_BOOL)
CLOUD_NODE = "/cloud/adder"

# A plain rclpy client: calls /add_two_ints once with a=20, b=22 and prints the sum.
RCLPY_CLIENT = """
import rclpy
from example_interfaces.srv import AddTwoInts
rclpy.init()
node = rclpy.create_node("add_client")
client = node.create_client(AddTwoInts, "/add_two_ints")
assert client.wait_for_service(timeout_sec=20.0), "no server"
future = client.call_async(AddTwoInts.Request(a=20, b=22))
rclpy.spin_until_future_complete(node, future, timeout_sec=20.0)
print("sum", future.result().sum, flush=True)
"""

# A plain rclpy server of std_srvs/SetBool on /switch: answers success=data, message "got <data>".
RCLPY_SERVER = """
import rclpy
from rclpy.executors import ExternalShutdownException
from std_srvs.srv import SetBool
rclpy.init()
node = rclpy.create_node("switch_server")
def serve(request, response):
    response.success = request.data
    response.message = f"got {request.data}"
    return response
node.create_service(SetBool, "/switch", serve)
print("ready", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def ros_process(script: str, domain_id: int) -> subprocess.Popen[str]:
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def ros2_service_call(
    domain_id: int, name: str, type_name: str, values: str
) -> subprocess.CompletedProcess[str]:
    """The real ``ros2 service call`` (it waits for the server itself)."""
    distro = os.environ.get("ROS_DISTRO", "jazzy")
    command = " ".join(
        ["source", shlex.quote(f"/opt/ros/{distro}/setup.bash"), "&&", "ros2", "service", "call"]
        + [shlex.quote(a) for a in (name, type_name, values)]
    )
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id)}
    return subprocess.run(
        ["bash", "-c", command], check=False, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def types() -> MessageTypes:
    found = MessageTypes("jazzy")
    register_srv(found, ADD_TWO_INTS)
    register_srv(found, SET_BOOL)
    return found


@pytest.fixture
def dds(ros_domain_id: int, types: MessageTypes) -> Iterator[DdsGraph]:
    graph = DdsGraph(ros_domain_id, types=types, node_name="/fogros_dist/bridge")
    yield graph
    graph.close()


def adder(types: MessageTypes, *, later: bool = False) -> Callable[[bytes, ServiceResponder], None]:
    request_type, response_type = f"{ADD_TWO_INTS}_Request", f"{ADD_TWO_INTS}_Response"

    def answer(cdr: bytes, respond: ServiceResponder) -> None:
        message = types.deserialize(request_type, cdr)
        respond(types.serialize(response_type, types.message_class(response_type)(sum=message.a + message.b)))

    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        if later:  # as a bridge does: the reply comes from another thread
            threading.Timer(0.2, answer, (cdr, respond)).start()
        else:
            answer(cdr, respond)

    return handle


def test_ros2_service_call_reaches_a_dds_graph_server(
    dds: DdsGraph, types: MessageTypes, ros_domain_id: int
) -> None:
    dds.service_server(ADD, adder(types, later=True), nodes=[CLOUD_NODE])
    result = ros2_service_call(ros_domain_id, ADD.name, ADD_TWO_INTS, "{a: 1, b: 2}")
    assert result.returncode == 0, result.stderr
    assert "sum=3" in result.stdout


def test_an_rclpy_client_reaches_a_dds_graph_server(
    dds: DdsGraph, types: MessageTypes, ros_domain_id: int
) -> None:
    dds.service_server(ADD, adder(types))
    client = ros_process(RCLPY_CLIENT, ros_domain_id)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    assert "sum 42" in out


def test_a_dds_graph_client_calls_an_rclpy_server(
    dds: DdsGraph, types: MessageTypes, ros_domain_id: int
) -> None:
    server = ros_process(RCLPY_SERVER, ros_domain_id)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        assert dds.discover_service_type(SWITCH.name, 20.0) == SET_BOOL
        client = dds.service_client(SWITCH)
        request_type, response_type = f"{SET_BOOL}_Request", f"{SET_BOOL}_Response"
        for data in (True, False):
            cdr = types.serialize(request_type, types.message_class(request_type)(data=data))
            reply = client.call(cdr, 20.0)
            assert reply is not None
            message = types.deserialize(response_type, reply)
            assert (message.success, message.message) == (data, f"got {data}")
    finally:
        stop(server)


def test_ros2_service_list_and_node_info_show_the_dds_graph_service(
    dds: DdsGraph, types: MessageTypes, ros_domain_id: int
) -> None:
    dds.service_server(ADD, adder(types), nodes=[CLOUD_NODE])
    dds.service_client(SWITCH)
    listed = ros2_until(["service", "list", "-t"], ros_domain_id, lambda out: ADD.name in out)
    assert f"{ADD.name} [{ADD_TWO_INTS}]" in listed
    info = ros2_until(["node", "info", CLOUD_NODE], ros_domain_id, lambda out: ADD.name in out)
    servers = info.split("Service Servers:")[1].split("Service Clients:")[0]
    assert f"{ADD.name}: {ADD_TWO_INTS}" in servers
    own = ros2_until(["node", "info", "/fogros_dist/bridge"], ros_domain_id, lambda out: SWITCH.name in out)
    assert f"{SWITCH.name}: {SET_BOOL}" in own.split("Service Clients:")[1]


def test_rclpy_graph_server_answers_ros2_service_call_from_another_thread(ros_domain_id: int) -> None:
    from example_interfaces.srv import AddTwoInts
    from rclpy.serialization import deserialize_message, serialize_message

    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        request = deserialize_message(cdr, AddTwoInts.Request)
        reply = serialize_message(AddTwoInts.Response(sum=request.a + request.b))
        threading.Timer(0.2, respond, (reply,)).start()

    with RclpyGraph(ros_domain_id, nodes=[CLOUD_NODE]) as graph:
        graph.service_server(ADD, handle, nodes=[CLOUD_NODE])
        result = ros2_service_call(ros_domain_id, ADD.name, ADD_TWO_INTS, "{a: 5, b: 6}")
        assert result.returncode == 0, result.stderr
        assert "sum=11" in result.stdout


def test_rclpy_graph_server_that_does_not_answer_leaves_the_graph_working(ros_domain_id: int) -> None:
    from example_interfaces.srv import AddTwoInts
    from rclpy.serialization import serialize_message

    calls: list[ServiceResponder] = []
    with RclpyGraph(ros_domain_id) as graph:
        types = MessageTypes("jazzy")
        register_srv(types, ADD_TWO_INTS)
        graph.service_server(ADD, lambda _cdr, respond: calls.append(respond))
        client = DdsGraph(ros_domain_id, types=types)
        try:
            caller = client.service_client(ADD)
            request = bytes(serialize_message(AddTwoInts.Request(a=1, b=2)))
            started = time.monotonic()
            assert caller.call(request, 1.0) is None  # never answered: the caller times out
            assert time.monotonic() - started >= 1.0
            # The executor was not held up: the next call is served, answered late from here.
            answer = threading.Thread(target=lambda: caller.call(request, TIMEOUT))
            answer.start()
            deadline = time.monotonic() + TIMEOUT
            while len(calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(calls) == 2
            calls[1](bytes(serialize_message(AddTwoInts.Response(sum=3))))
            answer.join(TIMEOUT)
            assert not answer.is_alive()
        finally:
            client.close()


def test_rclpy_graph_client_calls_an_rclpy_server(ros_domain_id: int) -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from std_srvs.srv import SetBool

    server = ros_process(RCLPY_SERVER, ros_domain_id)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        with RclpyGraph(ros_domain_id) as graph:
            assert graph.discover_service_type(SWITCH.name, 20.0) == SET_BOOL
            client = graph.service_client(SWITCH)
            reply = client.call(bytes(serialize_message(SetBool.Request(data=True))), 20.0)
            assert reply is not None
            assert deserialize_message(reply, SetBool.Response).message == "got True"
            assert client.server_ready()
            client.close()
            with pytest.raises(BridgeError, match="client of service /switch is closed"):
                client.call(b"", 1.0)
    finally:
        stop(server)
