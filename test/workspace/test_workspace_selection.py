"""Which packages of a user's workspace travel: found with catkin_pkg, closed over dependencies,
dependencies first; the workspace itself found from a real colcon overlay.

The only workspace here is the user's one this test writes itself (workspace_helpers: two
ament_python packages and an unrelated one), put through `colcon build` in its temporary folder,
as a user does with their own packages before launching."""

from __future__ import annotations

from pathlib import Path

import pytest
from workspace_helpers import colcon_build, python_package, user_workspace

from fogros_dist.deploy.workspace import workspace_for
from fogros_dist.errors import ConfigError
from fogros_dist.spec import DeploymentSpec, MachineSpec, NodeSpec
from fogros_dist.workspace import discover_packages, select_packages
from fogros_dist.workspace.overlay import overlay_workspaces


def test_a_node_package_travels_with_its_workspace_dependencies_only(tmp_path: Path) -> None:
    root = user_workspace(tmp_path / "ws")
    found = discover_packages(root)
    assert set(found) == {"greeter", "greet_words", "unrelated"}
    assert found["greeter"].depends == ("greet_words", "std_msgs")
    assert found["greet_words"].path == "src/words/greet_words"
    selection = select_packages(root, ["greeter", "rclpy"])
    assert selection is not None
    # Dependencies first, as colcon builds them; std_msgs and rclpy are the machine's to have.
    assert selection.names == ("greet_words", "greeter")
    assert selection.paths == ("src/words/greet_words", "src/greeter")
    assert select_packages(root, ["demo_nodes_py"]) is None


def test_colcon_output_and_ignored_directories_are_not_packages(tmp_path: Path) -> None:
    root = user_workspace(tmp_path / "ws")
    colcon_build(root)
    # colcon copies package.xml into install/<pkg>/share/<pkg>/: those are not sources.
    assert (root / "install" / "greeter" / "share" / "greeter" / "package.xml").is_file()
    python_package(root / "src" / "skipped", "skipped", modules={})
    (root / "src" / "skipped" / "COLCON_IGNORE").write_text("")
    assert set(discover_packages(root)) == {"greeter", "greet_words", "unrelated"}


def test_the_workspace_is_found_from_the_overlay_a_launch_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = user_workspace(tmp_path / "ws")
    install = colcon_build(root)
    # What sourcing install/setup.bash sets where no distribution is sourced: COLCON_PREFIX_PATH.
    monkeypatch.setenv("COLCON_PREFIX_PATH", str(install))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert overlay_workspaces() == (root.resolve(),)
    # Over a sourced distribution, a package prefix on AMENT_PREFIX_PATH leads to the same workspace.
    assert overlay_workspaces({"AMENT_PREFIX_PATH": str(install / "greeter")}) == (root.resolve(),)
    # A prefix that colcon did not make (a distribution installed from packages) is nobody's workspace.
    assert overlay_workspaces({"AMENT_PREFIX_PATH": str(tmp_path)}) == ()

    machine = MachineSpec(name="gpu", provider="ssh", options=(("host", "10.0.0.1"),))
    spec = DeploymentSpec(
        name="ws",
        machines=(machine,),
        nodes=(NodeSpec(name="greeter", package="greeter", executable="greeter_node", machine="gpu"),),
    )
    selection = workspace_for(spec, "gpu")
    assert selection is not None
    assert selection.root == str(root.resolve())
    assert selection.names == ("greet_words", "greeter")


def test_an_explicit_workspace_wins_and_a_missing_one_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLCON_PREFIX_PATH", raising=False)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    root = user_workspace(tmp_path / "ws")
    node = NodeSpec(name="greeter", package="greeter", executable="greeter_node", machine="gpu")
    plain = MachineSpec(name="gpu", provider="ssh", options=(("host", "h"),))
    assert workspace_for(DeploymentSpec(name="a", machines=(plain,), nodes=(node,)), "gpu") is None
    found = workspace_for(
        DeploymentSpec(name="a", machines=(plain,), nodes=(node,), workspace=str(root)), "gpu"
    )
    assert found is not None
    assert found.names == ("greet_words", "greeter")
    missing = MachineSpec(
        name="gpu", provider="ssh", options=(("host", "h"), ("workspace", str(tmp_path / "nope")))
    )
    with pytest.raises(ConfigError, match=r"^machine 'gpu' option workspace '.*/nope' is not a directory"):
        workspace_for(
            DeploymentSpec(name="a", machines=(missing,), nodes=(node,), workspace=str(root)), "gpu"
        )
    # fogros_dist itself never travels: the machine's runtime has it.
    own = NodeSpec(name="edges", package="fogros_dist", executable="edge_detector", machine="gpu")
    assert (
        workspace_for(DeploymentSpec(name="a", machines=(plain,), nodes=(own,), workspace=str(root)), "gpu")
        is None
    )


def test_bad_workspaces_fail_in_one_line_naming_the_package(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    python_package(root / "src", "a_pkg", modules={}, depends=("b_pkg",))
    python_package(root / "src", "b_pkg", modules={}, depends=("a_pkg",))
    with pytest.raises(
        ConfigError, match=r"packages depend on each other in a cycle \(a_pkg -> b_pkg -> a_pkg\)"
    ):
        select_packages(root, ["a_pkg"])
    python_package(root / "other", "a_pkg", modules={})
    with pytest.raises(ConfigError, match=r"two packages named 'a_pkg' \(other/a_pkg and src/a_pkg\)"):
        discover_packages(root)
    broken = tmp_path / "broken"
    python_package(broken, "c_pkg", modules={})
    manifest = broken / "c_pkg" / "package.xml"
    manifest.write_text(manifest.read_text().replace("lab@example.org", "not-an-email"))
    with pytest.raises(ConfigError, match=r"c_pkg/package.xml is not a valid package.xml \(Invalid email"):
        discover_packages(broken)
    with pytest.raises(ConfigError, match=r"is not a directory on this robot"):
        select_packages(tmp_path / "absent", ["x"])
