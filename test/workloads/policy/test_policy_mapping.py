"""The topic mapping as options and TOML, resolved against a bag's types; field paths; divergence."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from lab_bags import CMD_TOPIC, STATE_TOPIC, write_lab_bag

from fogros_dist.errors import ConfigError
from fogros_dist.ros.types import MessageTypes
from fogros_dist.workloads.policy.bags import bag_topics
from fogros_dist.workloads.policy.dataset import (
    DEFAULT_MAPPING,
    BagMapping,
    ChunkDataset,
    Episode,
    Normalizer,
    TopicFields,
    read_episode,
)
from fogros_dist.workloads.policy.fieldpaths import check_field_path, numeric_fields
from fogros_dist.workloads.policy.mapping import (
    MappingChoice,
    TopicChoice,
    add_mapping_arguments,
    load_mapping_file,
    mapping_from_args,
    resolve_mapping,
)
from fogros_dist.workloads.policy.model import ChunkPolicy, PolicyConfig
from fogros_dist.workloads.policy.train import TrainConfig, train_policy

TYPES = MessageTypes("jazzy")
LAB_CHOICE = MappingChoice(
    observation=(TopicChoice(topic=STATE_TOPIC, fields=("position[0]", "velocity[0]")),),
    action=TopicChoice(topic=CMD_TOPIC, fields=("linear.x",)),
    rate_hz=20.0,
    time_source="log",
)
DEFAULT_TOPICS = {t.topic: t.type for t in (*DEFAULT_MAPPING.observation, DEFAULT_MAPPING.action)}


def _args(words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_mapping_arguments(parser)
    return parser.parse_args(words.split())


def test_a_toml_file_gives_what_the_options_give(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(
        f'rate = 20\ntime = "receive"\n[[observation]]\ntopic = "{STATE_TOPIC}"\n'
        'fields = ["position[0]", "velocity[0]"]\n'
        f'[action]\ntopic = "{CMD_TOPIC}"\nfields = "linear.x"\n'
    )
    options = mapping_from_args(
        _args(
            f"--obs-topic {STATE_TOPIC} --obs-fields position[0],velocity[0] "
            f"--action-topic {CMD_TOPIC} --action-fields linear.x --rate 20 --time receive"
        )
    )
    assert load_mapping_file(path) == options == LAB_CHOICE


def test_a_mapping_table_in_a_bigger_file_is_read_and_options_win(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        'name = "lab"\n[[machines]]\nname = "gpu"\nprovider = "local"\n'
        "[mapping]\nrate = 20\ntolerance = 0.004\n"
        f'[[mapping.observation]]\ntopic = "{STATE_TOPIC}"\nfields = ["position[0]"]\nresample = "linear"\n'
        f'[[mapping.observation]]\ntopic = "/my_robot/goal"\nfields = ["point.x"]\n'
    )
    from_file = load_mapping_file(fleet)
    assert from_file == MappingChoice(
        observation=(
            TopicChoice(topic=STATE_TOPIC, fields=("position[0]",), resample="linear"),
            TopicChoice(topic="/my_robot/goal", fields=("point.x",)),
        ),
        rate_hz=20.0,
        tolerance_s=0.004,
    )
    # An option replaces the file's key; the keys it leaves alone stay the file's.
    chosen = mapping_from_args(_args(f"--mapping {fleet} --rate 50 --time header"))
    assert chosen == MappingChoice(
        observation=from_file.observation, rate_hz=50.0, time_source="header", tolerance_s=0.004
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('rate = "fast"', "rate is 'fast' (a string), expected a number, e.g. rate = 20"),
        ("rate = true", "rate is True (a boolean), expected a number, e.g. rate = 20"),
        ("rate = -5", "rate (-5.0) must be a finite number, positive"),
        ('time = "wall"', 'time is \'wall\', expected "header" or "receive"'),
        ("rat = 20", "unknown key 'rat' (allowed: rate, time, tolerance, observation, action)"),
        ("observation = []", "observation is empty: add an [[observation]] table with topic and fields"),
        (
            '[action]\nfields = ["linear.x"]',
            'action: topic is missing: name it, e.g. topic = "/my_robot/state"',
        ),
        (
            '[action]\ntopic = "/c"\nfields = [1]',
            "action: fields is [1] (a list), expected a list of field paths",
        ),
        (
            '[action]\ntopic = "/c"\nfields = ["x"]\nkind = 1',
            "action: unknown key 'kind' (allowed: topic, fields",
        ),
        ('[action]\ntopic = "/c"\nfields = "x"\nresample = "cubic"', "resample is 'cubic', expected"),
        ("action = 3", "action is 3 (an integer), expected a table with topic and fields"),
    ],
)
def test_a_bad_key_is_one_line_naming_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_mapping_file(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unreadable_mapping_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^mapping file .*nowhere.toml does not exist: check the path$"):
        load_mapping_file(tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError, match=r"is not a regular file: give a TOML file$"):
        load_mapping_file(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[action\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML \(.*line 1.*\): fix that line$"):
        load_mapping_file(broken)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"rate = 20 # \xe9\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 12\): save it as UTF-8$"):
        load_mapping_file(latin)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("--obs-fields position[0]", "--obs-fields and --obs-resample need --obs-topic"),
        ("--obs-topic /a --obs-topic /b --obs-fields x", "2 --obs-topic and 1 --obs-fields"),
        ("--obs-topic /a --obs-fields x --obs-resample linear --obs-resample zoh", "1 --obs-topic and 2"),
        ("--action-topic /cmd", "--action-topic and --action-fields go together"),
        ("--obs-topic /a --obs-fields x,,y", "--obs-fields 'x,,y' has an empty field path"),
        ("--rate 0", "--rate (0.0) must be a finite number, positive"),
        ("--tolerance -1", "--tolerance (-1.0) must be a finite number, zero or more"),
    ],
)
def test_options_that_do_not_pair_up_are_refused(words: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        mapping_from_args(_args(words))
    assert message in str(err.value)


def test_resolving_takes_types_from_the_bag_and_reads_it(tmp_path: Path) -> None:
    bag = tmp_path / "lab_00"
    write_lab_bag(bag, seed=0, seconds=1.0)
    recorded = bag_topics(bag)
    assert recorded == {STATE_TOPIC: "sensor_msgs/msg/JointState", CMD_TOPIC: "geometry_msgs/msg/Twist"}
    mapping = resolve_mapping(LAB_CHOICE, bag=bag, recorded=recorded, types=TYPES)
    assert mapping == BagMapping(
        observation=(
            TopicFields(
                topic=STATE_TOPIC, type="sensor_msgs/msg/JointState", fields=("position[0]", "velocity[0]")
            ),
        ),
        action=TopicFields(topic=CMD_TOPIC, type="geometry_msgs/msg/Twist", fields=("linear.x",)),
        rate_hz=20.0,
        time_source="log",
    )
    episode = read_episode(bag, mapping=mapping)
    # 1 s at 20 Hz on the state's clock; the lab's commands saturate at 0.8 m/s.
    assert len(episode) in (19, 20)
    assert np.all(np.diff(episode.times) == 50_000_000)
    assert np.all(np.abs(episode.actions) <= 0.8)
    # Nothing chosen: the project's own mapping, unchanged.
    assert (
        resolve_mapping(MappingChoice(), bag=bag, recorded=dict(DEFAULT_TOPICS), types=TYPES)
        == DEFAULT_MAPPING
    )


def test_resolving_refuses_what_the_bag_does_not_fit(tmp_path: Path) -> None:
    bag = tmp_path / "lab_00"
    recorded = {STATE_TOPIC: "sensor_msgs/msg/JointState", CMD_TOPIC: "geometry_msgs/msg/Twist"}
    stamped = MappingChoice(
        observation=LAB_CHOICE.observation,
        action=TopicChoice(
            topic=CMD_TOPIC, fields=("twist.linear.x",), type="geometry_msgs/msg/TwistStamped"
        ),
        time_source="log",
    )
    with pytest.raises(ConfigError) as err:
        resolve_mapping(stamped, bag=bag, recorded=recorded, types=TYPES)
    assert str(err.value) == (
        f"bag {bag} records {CMD_TOPIC} as geometry_msgs/msg/Twist, the mapping says "
        "geometry_msgs/msg/TwistStamped: drop the type or write geometry_msgs/msg/Twist"
    )
    missing = MappingChoice(
        observation=(TopicChoice(topic="/other", fields=("data",)),), action=LAB_CHOICE.action
    )
    with pytest.raises(ConfigError, match=r"has no topic /other \(mapped to the observation\): it records "):
        resolve_mapping(missing, bag=bag, recorded=recorded, types=TYPES)


@pytest.mark.parametrize(
    ("type_name", "path", "problem"),
    [
        ("geometry_msgs/msg/Twist", "linear.q", "does not exist: geometry_msgs/msg/Vector3 has no field 'q'"),
        ("geometry_msgs/msg/Twist", "linear", "is a geometry_msgs/msg/Vector3, not a number"),
        ("geometry_msgs/msg/Twist", "linear.x.y", "x is a number, it has no field 'y'"),
        ("geometry_msgs/msg/Twist", "linear[0]", "linear is not an array, drop [0]"),
        (
            "sensor_msgs/msg/JointState",
            "velocity",
            "velocity is an array, pick one element, e.g. velocity[0]",
        ),
        ("sensor_msgs/msg/JointState", "header.frame_id", "is a string, not a number"),
        ("geometry_msgs/msg/PoseWithCovariance", "covariance[36]", "covariance has 36 elements, index 36"),
    ],
)
def test_a_field_path_is_checked_against_the_type(type_name: str, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_field_path(TYPES, topic="/t", type_name=type_name, path=path)
    text = str(err.value)
    assert text.startswith(f"field {path!r} of /t ({type_name})")
    assert problem in text
    assert text.endswith(f"; its numeric fields are {', '.join(numeric_fields(TYPES, type_name))}")


def test_good_paths_pass_and_numeric_fields_are_listed() -> None:
    for type_name, path in [
        ("sensor_msgs/msg/JointState", "position[7]"),
        ("geometry_msgs/msg/TwistStamped", "twist.angular.z"),
        ("geometry_msgs/msg/PoseWithCovariance", "covariance[35]"),
        ("sensor_msgs/msg/JointState", "header.stamp.sec"),
    ]:
        check_field_path(TYPES, topic="/t", type_name=type_name, path=path)
    assert numeric_fields(TYPES, "sensor_msgs/msg/JointState") == (
        "header.stamp.sec",
        "header.stamp.nanosec",
        "position[i]",
        "velocity[i]",
        "effort[i]",
    )
    assert numeric_fields(TYPES, "geometry_msgs/msg/PoseWithCovariance")[-1] == "covariance[0..35]"


def test_training_that_diverges_stops_with_the_cause() -> None:
    # Values this large overflow the first LayerNorm (its variance squares them): the loss is nan.
    episodes = [
        Episode(
            bag=Path(f"e{i}"),
            times=np.arange(10, dtype=np.int64),
            observations=np.full((10, 2), 1e30) * np.arange(1, 11)[:, None],
            actions=np.ones((10, 1)),
        )
        for i in range(2)
    ]
    norm = Normalizer(
        observation_mean=(0.0, 0.0), observation_std=(1.0, 1.0), action_mean=(0.0,), action_std=(1.0,)
    )
    data = ChunkDataset(episodes, chunk=2, normalizer=norm)
    model = ChunkPolicy(PolicyConfig(observation_dim=2, action_dim=1, chunk=2, hidden=8, layers=1), norm)
    with torch.no_grad():
        assert not torch.isfinite(model(data.observations)).all()
    with pytest.raises(
        ConfigError, match=r"^training diverged: the loss is nan in epoch 1: lower the learning"
    ):
        train_policy(model, train=data, val=data, config=TrainConfig(epochs=3, batch_size=4))
