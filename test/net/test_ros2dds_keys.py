"""The keys, liveliness tokens and QoS encoding of zenoh-bridge-ros2dds 1.x, checked against its own
source: eclipse-zenoh/zenoh-plugin-ros2dds at commit 09d68c049936b7d2642eddb2457b47a19903ebdd
(1.10.0), files zenoh-plugin-ros2dds/src/liveliness_mgt.rs and zenoh-plugin-ros2dds/src/ros2_utils.rs.
Every string in a ``# liveliness_mgt.rs`` or ``# ros2_utils.rs`` comment below is copied from there.
"""

from __future__ import annotations

import re
import threading

import pytest
import zenoh
from net_test_helpers import TIMEOUT

from fogros_dist.errors import ConfigError, InvalidTopicName
from fogros_dist.net import ros2dds_keys as keys
from fogros_dist.spec import QosSpec

ZID = "4f8e2a1b0c9d7e6f5a4b3c2d1e0f9a8b"
TYPE_HASH = "typehash=RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18;"

# liveliness_mgt.rs, kedefine!(...)
KEDEFINE = {
    "MP": "@/${zenoh_id:*}/@ros2_lv/MP/${ke:*}/${typ:*}/${qos_ke:*}",
    "MS": "@/${zenoh_id:*}/@ros2_lv/MS/${ke:*}/${typ:*}/${qos_ke:*}",
    "SS": "@/${zenoh_id:*}/@ros2_lv/SS/${ke:*}/${typ:*}",
    "SC": "@/${zenoh_id:*}/@ros2_lv/SC/${ke:*}/${typ:*}",
    "AS": "@/${zenoh_id:*}/@ros2_lv/AS/${ke:*}/${typ:*}",
    "AC": "@/${zenoh_id:*}/@ros2_lv/AC/${ke:*}/${typ:*}",
}
# liveliness_mgt.rs: pub ke_liveliness_all: "@/${zenoh_id:*}/@ros2_lv/${remaining:**}"
KE_LIVELINESS_ALL = "@/${zenoh_id:*}/@ros2_lv/${remaining:**}"


def _template_fields(template: str, key: str) -> dict[str, str]:
    """The ``${name:*}`` fields of a kedefine template that ``key`` fills (one chunk each)."""
    pattern = re.escape(template)
    pattern = re.sub(r"\\\$\\\{(\w+):\\\*\\\}", r"(?P<\1>[^/]+)", pattern)
    match = re.fullmatch(pattern, key)
    assert match is not None, f"{key} does not fit {template}"
    return match.groupdict()


def test_slashes_travel_as_the_section_sign() -> None:
    # liveliness_mgt.rs: const SLASH_REPLACEMSNT_CHAR: &str = "§";
    assert keys.SLASH_ESCAPE == "§"
    assert keys.escape("sensor_msgs/msg/Image") == "sensor_msgs§msg§Image"
    assert keys.unescape("camera§depth§image") == "camera/depth/image"


def test_publisher_token_fills_the_plugins_template_both_ways() -> None:
    qos = QosSpec(reliability="best_effort", durability="volatile", depth=5)
    key = keys.publisher_token(ZID, "/camera/depth/image", "sensor_msgs/msg/Image", qos, user_data=TYPE_HASH)
    fields = _template_fields(KEDEFINE["MP"], key)
    assert fields == {
        "zenoh_id": ZID,
        "ke": "camera§depth§image",
        "typ": "sensor_msgs§msg§Image",
        "qos_ke": ":0:0:0,5:" + TYPE_HASH,
    }
    token = keys.parse_token(key)
    assert token is not None
    assert (token.zid, token.kind, token.name, token.type_name) == (
        ZID,
        "MP",
        "/camera/depth/image",
        "sensor_msgs/msg/Image",
    )
    assert token.qos == keys.DecodedQos(qos=qos, keyless=True, user_data=TYPE_HASH)


def test_subscriber_service_and_action_tokens_fill_their_templates() -> None:
    sub = keys.subscriber_token(
        ZID, "/tf_static", "tf2_msgs/msg/TFMessage", QosSpec(durability="transient_local")
    )
    assert _template_fields(KEDEFINE["MS"], sub)["qos_ke"] == ":1:1:0,10"
    made = {
        "SS": keys.service_server_token(ZID, "/add_two_ints", "example_interfaces/srv/AddTwoInts"),
        "SC": keys.service_client_token(ZID, "/add_two_ints", "example_interfaces/srv/AddTwoInts"),
        "AS": keys.action_server_token(ZID, "/fibonacci", "example_interfaces/action/Fibonacci"),
        "AC": keys.action_client_token(ZID, "/fibonacci", "example_interfaces/action/Fibonacci"),
    }
    for kind, key in made.items():
        fields = _template_fields(KEDEFINE[kind], key)
        assert fields["zenoh_id"] == ZID
        token = keys.parse_token(key)
        assert token is not None
        assert token.kind == kind
        assert token.qos is None
        assert keys.escape(keys.name_to_key(token.name)) == fields["ke"]
        assert keys.escape(token.type_name) == fields["typ"]
    assert made["SS"] == f"@/{ZID}/@ros2_lv/SS/add_two_ints/example_interfaces§srv§AddTwoInts"
    assert made["AC"] == f"@/{ZID}/@ros2_lv/AC/fibonacci/example_interfaces§action§Fibonacci"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # liveliness_mgt.rs test_qos_key_expr: assert_eq!(qos_to_key_expr(true, &q).to_string(), ":::");
        (":::", keys.DecodedQos(qos=QosSpec(depth=1), keyless=True)),
        # ... assert_eq!(qos_to_key_expr(false, &q).to_string(), "K:::");
        ("K:::", keys.DecodedQos(qos=QosSpec(depth=1), keyless=False)),
        # ... format!(":{}::", ReliabilityKind::RELIABLE as u8)   (RELIABLE = 1, BEST_EFFORT = 0)
        (":1::", keys.DecodedQos(qos=QosSpec(reliability="reliable", depth=1))),
        (":0::", keys.DecodedQos(qos=QosSpec(reliability="best_effort", depth=1))),
        # ... format!("::{}:", DurabilityKind::TRANSIENT_LOCAL as u8)   (TRANSIENT_LOCAL = 1)
        ("::1:", keys.DecodedQos(qos=QosSpec(durability="transient_local", depth=1))),
        # ... format!(":::{},3", HistoryKind::KEEP_LAST as u8)   (KEEP_LAST = 0)
        (":::0,3", keys.DecodedQos(qos=QosSpec(depth=3))),
        # The 5th element is the USER_DATA (key_expr_to_qos: "might be present as 5th element").
        (
            ":1:1:0,7:" + TYPE_HASH,
            keys.DecodedQos(qos=QosSpec(durability="transient_local", depth=7), user_data=TYPE_HASH),
        ),
        # KEEP_ALL = 1: no depth of its own; TRANSIENT (2) serves late joiners as transient local does.
        (
            ":1:2:1,0",
            keys.DecodedQos(qos=QosSpec(durability="transient_local", history="keep_all", depth=1000)),
        ),
    ],
)
def test_qos_decodes_the_plugins_forms(text: str, expected: keys.DecodedQos) -> None:
    assert keys.decode_qos(text) == expected


@pytest.mark.parametrize(
    "qos",
    [
        QosSpec(),
        QosSpec(reliability="best_effort", depth=1),
        QosSpec(durability="transient_local", depth=42),
        QosSpec(history="keep_all", depth=1000),
    ],
)
def test_qos_round_trips(qos: QosSpec) -> None:
    for keyless in (True, False):
        text = keys.encode_qos(qos, keyless=keyless)
        assert text.startswith(":" if keyless else "K:")
        assert keys.decode_qos(text) == keys.DecodedQos(qos=qos, keyless=keyless)
    assert keys.encode_qos(QosSpec(reliability="best_effort", depth=5)) == ":0:0:0,5"


def test_bad_qos_and_names_are_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"'1:0' is not zenoh-bridge-ros2dds' form"):
        keys.decode_qos("1:0")
    with pytest.raises(ConfigError, match="not zenoh-bridge-ros2dds' form"):
        keys.decode_qos(":9::")
    with pytest.raises(InvalidTopicName):
        keys.publisher_token(ZID, "chatter", "std_msgs/msg/String", QosSpec())
    with pytest.raises(ConfigError, match="Zenoh id"):
        keys.publisher_token("a/b", "/chatter", "std_msgs/msg/String", QosSpec())
    assert keys.parse_token("@ros2_lv/abc/MP/x/y/z") is None  # the pre-1.x shape
    assert keys.parse_token(f"@/{ZID}/@ros2_lv/MP/chatter/std_msgs§msg§String/bad") is None


def test_names_map_to_keys_as_ros2_name_to_key_expr_does() -> None:
    # ros2_utils.rs ros2_name_to_key_expr: namespace "/" -> the name without its leading '/';
    # else the namespace (without its '/') / the name.
    assert keys.name_to_key("/chatter") == "chatter"
    assert keys.name_to_key("/camera/image_raw", namespace="/robot1") == "robot1/camera/image_raw"
    assert keys.key_to_name("robot1/camera/image_raw", namespace="/robot1") == "/camera/image_raw"
    assert keys.key_to_name("other/chatter", namespace="/robot1") == "/other/chatter"
    token = keys.publisher_token(ZID, "/chatter", "std_msgs/msg/String", QosSpec(), namespace="/robot1")
    assert "/MP/robot1§chatter/" in token
    parsed = keys.parse_token(token, namespace="/robot1")
    assert parsed is not None
    assert parsed.name == "/chatter"
    # ros2_utils.rs: KE_SUFFIX_ACTION_SEND_GOAL "_action/send_goal" ... KE_SUFFIX_ACTION_STATUS
    assert keys.ACTION_SUFFIXES == (
        "_action/send_goal",
        "_action/cancel_goal",
        "_action/get_result",
        "_action/feedback",
        "_action/status",
    )


def test_a_real_session_declares_them_and_the_plugins_pattern_sees_them() -> None:
    """Zenoh accepts the keys ('§', ':', '=', ';' in chunks), and a liveliness subscriber on the
    plugin's ke_liveliness_all (and on our per-topic pattern) receives them."""
    config = zenoh.Config()
    config.insert_json5("scouting/multicast/enabled", "false")
    config.insert_json5("listen/endpoints", "[]")
    with zenoh.open(config) as session:
        zid = str(session.zid())
        seen: list[str] = []
        got_both = threading.Event()

        def on_token(sample: zenoh.Sample) -> None:
            if sample.kind == zenoh.SampleKind.PUT:
                seen.append(str(sample.key_expr))
                if len(seen) >= 2:
                    got_both.set()

        everything = KE_LIVELINESS_ALL.replace("${zenoh_id:*}", "*").replace("${remaining:**}", "**")
        watcher = session.liveliness().declare_subscriber(everything, on_token, history=True)
        mp = keys.publisher_token(
            zid,
            "/tf_static",
            "tf2_msgs/msg/TFMessage",
            QosSpec(durability="transient_local"),
            user_data=TYPE_HASH,
        )
        ss = keys.service_server_token(zid, "/add_two_ints", "example_interfaces/srv/AddTwoInts")
        tokens = [session.liveliness().declare_token(k) for k in (mp, ss)]
        assert got_both.wait(TIMEOUT)
        assert sorted(seen) == sorted([mp, ss])
        replies = [
            r.ok for r in session.liveliness().get(keys.token_pattern("MP", "/tf_static"), timeout=TIMEOUT)
        ]
        assert [str(r.key_expr) for r in replies if r is not None] == [mp]
        for token in tokens:
            token.undeclare()
        watcher.undeclare()


def test_deadline_and_lifespan_travel_in_the_user_data_and_come_back_out_of_it() -> None:
    qos = QosSpec(reliability="best_effort", depth=5, deadline_s=0.1, lifespan_s=2.5)
    text = keys.encode_qos(qos, user_data=TYPE_HASH)
    assert text == f":0:0:0,5:{TYPE_HASH}fogros_deadline_ns=100000000;fogros_lifespan_ns=2500000000;"
    assert keys.decode_qos(text) == keys.DecodedQos(qos=qos, user_data=TYPE_HASH)
    # Without either, the form is zenoh-bridge-ros2dds' own, byte for byte.
    assert keys.encode_qos(QosSpec(depth=5), user_data=TYPE_HASH) == f":1:0:0,5:{TYPE_HASH}"


def test_a_deadline_that_is_not_a_number_is_one_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"fogros_deadline_ns='soon'.*whole number of nanoseconds"):
        keys.decode_qos(":1:0:0,5:fogros_deadline_ns=soon;")
