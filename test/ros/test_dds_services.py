"""DdsGraph service servers and clients on real Cyclone DDS (loopback): rmw_cyclonedds_cpp's
service wire format, replies from other threads, failures, concurrency, nodes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription
from ros_graph_view import GraphView
from ros_test_helpers import TIMEOUT, Waiter
from service_types import ADD_TWO_INTS, register_srv

from fogros_dist.errors import BridgeError, ConfigError
from fogros_dist.ros.dds import DdsGraph
from fogros_dist.ros.dds_services import (
    RequestHeader,
    format_service_id,
    unwrap_request,
    user_data_value,
    wrap_request,
)
from fogros_dist.ros.graph import ServiceResponder
from fogros_dist.ros.types import MessageTypes
from fogros_dist.spec import ServiceSpec

REQUEST = f"{ADD_TWO_INTS}_Request"
RESPONSE = f"{ADD_TWO_INTS}_Response"
# A name no other process on the host serves (other test runs share the DDS domains' range).
ADD = ServiceSpec(name=f"/add_{os.getpid()}", type=ADD_TWO_INTS)
NAME = ADD.name[1:]


@pytest.fixture
def types() -> MessageTypes:
    found = MessageTypes("jazzy")
    register_srv(found, ADD_TWO_INTS)
    return found


@pytest.fixture
def graphs(ros_domain_id: int, types: MessageTypes) -> Iterator[Callable[..., DdsGraph]]:
    opened: list[DdsGraph] = []

    def open_graph(**kwargs: Any) -> DdsGraph:
        graph = DdsGraph(ros_domain_id, types=types, **kwargs)
        opened.append(graph)
        return graph

    yield open_graph
    for graph in opened:
        graph.close()


def request(types: MessageTypes, a: int, b: int) -> bytes:
    return types.serialize(REQUEST, types.message_class(REQUEST)(a=a, b=b))


def total(types: MessageTypes, reply: bytes | None) -> int:
    assert reply is not None
    return int(types.deserialize(RESPONSE, reply).sum)


def adder(types: MessageTypes) -> Callable[[bytes, ServiceResponder], None]:
    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        message = types.deserialize(REQUEST, cdr)
        respond(types.serialize(RESPONSE, types.message_class(RESPONSE)(sum=message.a + message.b)))

    return handle


def test_call_crosses_and_the_handler_sees_the_request_without_rmw_header(
    graphs: Callable[..., DdsGraph], types: MessageTypes
) -> None:
    server_graph, client_graph = graphs(), graphs()
    seen: list[bytes] = []

    def handle(cdr: bytes, respond: ServiceResponder) -> None:
        seen.append(cdr)
        adder(types)(cdr, respond)

    server_graph.service_server(ADD, handle)
    client = client_graph.service_client(ADD)
    assert client.call(request(types, 1, 2), TIMEOUT) is not None
    assert client.server_ready()
    for a, b in ((3, 4), (-10, 2**40)):
        assert total(types, client.call(request(types, a, b), TIMEOUT)) == a + b
    assert seen[-1] == request(types, -10, 2**40)  # byte-exact: encapsulation header + body


def test_wire_topics_types_and_user_data_are_rmw_cyclonedds(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    server_graph, client_graph, observer = graphs(), graphs(), graphs()
    server_graph.service_server(ADD, adder(types))
    client_graph.service_client(ADD)
    publications = BuiltinDataReader(observer._participant, BuiltinTopicDcpsPublication)
    subscriptions = BuiltinDataReader(observer._participant, BuiltinTopicDcpsSubscription)
    found: dict[tuple[str, str], Any] = {}

    def seen() -> bool:
        for kind, reader in (("writer", publications), ("reader", subscriptions)):
            for endpoint in reader.take(N=64):
                if getattr(endpoint, "topic_name", "").startswith(("rq/", "rr/")):
                    found[(kind, endpoint.topic_name)] = endpoint
        return len(found) == 4

    try:
        assert wait_for(seen, TIMEOUT), found
        request_hash = types.resolve(REQUEST).type_hash
        reply_hash = types.resolve(RESPONSE).type_hash
        server_reader = found[("reader", f"rq/{NAME}Request")]
        server_writer = found[("writer", f"rr/{NAME}Reply")]
        client_writer = found[("writer", f"rq/{NAME}Request")]
        client_reader = found[("reader", f"rr/{NAME}Reply")]
        assert server_reader.type_name == "example_interfaces::srv::dds_::AddTwoInts_Request_"
        assert server_writer.type_name == "example_interfaces::srv::dds_::AddTwoInts_Response_"
        assert server_reader.participant_key == server_graph._participant.guid
        # One id per server (and per client) on both its endpoints, then the type hash.
        service_id = user_data_value(server_reader.qos, "serviceid")
        assert service_id is not None
        assert user_data_value(server_writer.qos, "serviceid") == service_id
        assert service_id.startswith(f"{server_graph.guid[0]:02x}.")
        assert user_data_value(server_reader.qos, "typehash") == request_hash
        assert user_data_value(server_writer.qos, "typehash") == reply_hash
        client_id = user_data_value(client_writer.qos, "clientid")
        assert client_id is not None
        assert user_data_value(client_reader.qos, "clientid") == client_id
        assert user_data_value(client_writer.qos, "serviceid") is None
    finally:
        publications.__del__()
        subscriptions.__del__()


def test_request_header_and_ids_are_laid_out_as_rmw_does() -> None:
    body = bytes(range(8))
    little = wrap_request(RequestHeader(guid=0x0102030405060708, seq=9), b"\x00\x01\x00\x00" + body)
    assert (
        little == b"\x00\x01\x00\x00" + bytes.fromhex("0807060504030201") + (9).to_bytes(8, "little") + body
    )
    big = wrap_request(RequestHeader(guid=1, seq=-1), b"\x00\x00\x00\x00" + body)
    assert big[4:20] == (1).to_bytes(8, "big") + b"\xff" * 8
    assert unwrap_request(big) == (RequestHeader(guid=1, seq=-1), b"\x00\x00\x00\x00" + body)
    with pytest.raises(ConfigError, match="19 bytes are no service sample"):
        unwrap_request(bytes(19))
    # csid_to_string: first byte two hex digits, the others unpadded, the counter big endian.
    guid = bytes([0x01, 0x0F, 0xA3, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]) + bytes(4)
    assert format_service_id(guid, 0x0102) == "01.f.a3.0.0.0.0.0.0.0.0.10.0.0.1.2"


def test_reply_from_another_thread_later(graphs: Callable[..., DdsGraph], types: MessageTypes) -> None:
    server_graph, client_graph = graphs(), graphs()
    handle = adder(types)

    def later(cdr: bytes, respond: ServiceResponder) -> None:
        threading.Timer(0.3, handle, (cdr, respond)).start()

    server_graph.service_server(ADD, later)
    client = client_graph.service_client(ADD)
    started = time.monotonic()
    assert total(types, client.call(request(types, 20, 22), TIMEOUT)) == 42
    assert time.monotonic() - started >= 0.3


def test_a_raising_handler_leaves_that_call_unanswered_and_serves_the_next(
    graphs: Callable[..., DdsGraph], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    server_graph, client_graph = graphs(), graphs()
    good = adder(types)

    def flaky(cdr: bytes, respond: ServiceResponder) -> None:
        if types.deserialize(REQUEST, cdr).a < 0:
            raise ValueError("negative")
        good(cdr, respond)

    server_graph.service_server(ADD, flaky)
    client = client_graph.service_client(ADD)
    assert total(types, client.call(request(types, 1, 1), TIMEOUT)) == 2
    with caplog.at_level(logging.ERROR, logger="fogros_dist.ros.dds_services"):
        assert client.call(request(types, -1, 1), 0.5) is None
    assert f"handler of service {ADD.name} raised; that call gets no reply" in caplog.text
    assert total(types, client.call(request(types, 2, 2), TIMEOUT)) == 4


def test_no_server_or_no_answer_times_out(graphs: Callable[..., DdsGraph], types: MessageTypes) -> None:
    server_graph, client_graph = graphs(), graphs()
    client = client_graph.service_client(ADD)
    started = time.monotonic()
    assert client.call(request(types, 1, 2), 0.3) is None
    assert 0.3 <= time.monotonic() - started < 2.0
    assert not client.server_ready()

    server_graph.service_server(ADD, lambda _cdr, _respond: None)  # never answers
    started = time.monotonic()
    assert client.call(request(types, 1, 2), 1.0) is None
    assert 1.0 <= time.monotonic() - started < 3.0
    assert client.server_ready()


def test_concurrent_calls_each_get_their_own_reply(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    server_graph, client_graph = graphs(), graphs()
    held: list[tuple[bytes, ServiceResponder]] = []
    handle = adder(types)
    server_graph.service_server(ADD, lambda cdr, respond: held.append((cdr, respond)))
    client = client_graph.service_client(ADD)
    results: dict[int, int] = {}

    def caller(a: int) -> None:
        results[a] = total(types, client.call(request(types, a, 1000), TIMEOUT))

    threads = [threading.Thread(target=caller, args=(a,)) for a in (1, 2, 3)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: len(held) == 3, TIMEOUT)
    for cdr, respond in reversed(held):  # answered in the opposite order
        handle(cdr, respond)
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == {1: 1001, 2: 1002, 3: 1003}


def test_close_while_a_call_is_pending_returns_none_at_once(
    graphs: Callable[..., DdsGraph], types: MessageTypes, wait_for: Waiter
) -> None:
    server_graph, client_graph = graphs(), graphs()
    held: list[ServiceResponder] = []
    server = server_graph.service_server(ADD, lambda _cdr, respond: held.append(respond))
    client = client_graph.service_client(ADD)
    outcome: list[bytes | None] = []
    caller = threading.Thread(target=lambda: outcome.append(client.call(request(types, 1, 2), 30.0)))
    caller.start()
    assert wait_for(lambda: bool(held), TIMEOUT)
    started = time.monotonic()
    client.close()
    caller.join(TIMEOUT)
    assert outcome == [None]
    assert time.monotonic() - started < 2.0
    with pytest.raises(BridgeError, match=f"client of service {ADD.name} is closed"):
        client.call(request(types, 1, 2), 1.0)
    # A reply after the server closed goes nowhere and raises nothing.
    server.close()
    held[0](types.serialize(RESPONSE, types.message_class(RESPONSE)(sum=3)))


def test_a_second_reply_is_dropped_with_a_warning(
    graphs: Callable[..., DdsGraph], types: MessageTypes, caplog: pytest.LogCaptureFixture, wait_for: Waiter
) -> None:
    server_graph, client_graph = graphs(), graphs()
    handle = adder(types)

    def twice(cdr: bytes, respond: ServiceResponder) -> None:
        handle(cdr, respond)
        handle(cdr, respond)

    server_graph.service_server(ADD, twice)
    client = client_graph.service_client(ADD)
    with caplog.at_level(logging.WARNING, logger="fogros_dist.ros.dds_services"):
        assert total(types, client.call(request(types, 5, 5), TIMEOUT)) == 10
        # The second respond() runs on the server's thread after the reply went out.
        assert wait_for(lambda: "answered twice: the second reply is dropped" in caplog.text, TIMEOUT)


def test_a_reply_that_is_no_response_is_rejected_with_a_line(
    graphs: Callable[..., DdsGraph], types: MessageTypes, caplog: pytest.LogCaptureFixture
) -> None:
    server_graph, client_graph = graphs(), graphs()
    server_graph.service_server(ADD, lambda _cdr, respond: respond(b"\x00\x01\x00\x00\x01"))
    client = client_graph.service_client(ADD)
    with caplog.at_level(logging.ERROR, logger="fogros_dist.ros.dds_services"):
        assert client.call(request(types, 1, 2), 1.0) is None
    assert f"reply on service {ADD.name} rejected by DDS" in caplog.text


def test_a_request_that_is_no_request_raises(graphs: Callable[..., DdsGraph], types: MessageTypes) -> None:
    server_graph, client_graph = graphs(), graphs()
    server_graph.service_server(ADD, adder(types))
    client = client_graph.service_client(ADD)
    assert client.call(request(types, 1, 2), TIMEOUT) is not None
    with pytest.raises(BridgeError, match=f"request on service {ADD.name} rejected by DDS"):
        client.call(b"\x00\x01\x00\x00\x01", 1.0)


def test_servers_and_clients_belong_to_their_nodes(
    graphs: Callable[..., DdsGraph], types: MessageTypes, ros_domain_id: int
) -> None:
    view = GraphView(ros_domain_id)
    try:
        graph = graphs(node_name="/fogros_dist/bridge")
        server = graph.service_server(ADD, adder(types), nodes=["/cloud/adder"])
        client = graph.service_client(ServiceSpec(name="/other", type=ADD_TWO_INTS))
        assert view.wait(
            lambda v: (
                v.topics_of("/cloud/adder") == ({f"rr/{NAME}Reply"}, {f"rq/{NAME}Request"})
                and v.topics_of("/fogros_dist/bridge") == ({"rq/otherRequest"}, {"rr/otherReply"})
            )
        ), view.rosters
        server.close()
        client.close()
        assert view.wait(
            lambda v: (
                v.topics_of("/cloud/adder") == (set(), set())
                and v.topics_of("/fogros_dist/bridge") == (set(), set())
            )
        )
    finally:
        view.close()


def test_discover_service_type_sees_other_servers_only(
    graphs: Callable[..., DdsGraph], types: MessageTypes
) -> None:
    server_graph, observer = graphs(), graphs()
    assert observer.discover_service_type(ADD.name, 0.2) is None
    server_graph.service_server(ADD, adder(types))
    assert observer.discover_service_type(ADD.name, TIMEOUT) == ADD_TWO_INTS
    assert server_graph.discover_service_type(ADD.name, 0.2) is None  # its own server is not news
    observer.service_client(ServiceSpec(name="/client_only", type=ADD_TWO_INTS))
    assert server_graph.discover_service_type("/client_only", 0.2) is None  # a client is no server


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ServiceSpec(name="/add"), "service /add has no type: set ServiceSpec.type"),
        (
            ServiceSpec(name="/add", type="std_msgs/msg/String"),
            "is not a service type: use 'package/srv/Type'",
        ),
        (ServiceSpec(name="add", type=ADD_TWO_INTS), "is relative"),
    ],
)
def test_bad_service_specs_are_refused_in_one_line(
    graphs: Callable[..., DdsGraph], spec: ServiceSpec, message: str
) -> None:
    graph = graphs()
    with pytest.raises(ConfigError, match=message):
        graph.service_server(spec, lambda _cdr, _respond: None)
    with pytest.raises(ConfigError, match=message):
        graph.service_client(spec)


def test_closing_the_graph_closes_its_servers_and_clients(
    graphs: Callable[..., DdsGraph], types: MessageTypes
) -> None:
    graph, other = graphs(), graphs()
    graph.service_server(ADD, adder(types))
    client = graph.service_client(ServiceSpec(name="/other", type=ADD_TWO_INTS))
    other_client = other.service_client(ADD)
    assert other_client.call(request(types, 1, 2), TIMEOUT) is not None
    graph.close()
    assert not client.server_ready()
    with pytest.raises(BridgeError, match="closed"):
        client.call(request(types, 1, 2), 0.1)
    assert other_client.call(request(types, 1, 2), 0.3) is None
    with pytest.raises(BridgeError, match=r"DDS graph on domain \d+ is closed"):
        graph.service_server(ADD, adder(types))
