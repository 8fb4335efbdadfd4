"""What the robot makes of a workspace build's output: progress per package, and the one line a
failure becomes (colcon's own traceback left out, the compiler's or setup.py's words kept)."""

from __future__ import annotations

from fogros_dist.remote.workspace_build import ColconProgress, error_lines


def test_colcon_lines_become_progress_and_the_outcome() -> None:
    seen: list[tuple[str, str]] = []
    watcher = ColconProgress(
        packages=("greet_msgs", "greeter_ros"), progress=lambda s, m: seen.append((s, m))
    )
    for line in (
        "fogros-build: rosdep: skipped: rosdep is not installed on this host",
        "Starting >>> greet_msgs",
        "Finished <<< greet_msgs [12.3s]",
        "Starting >>> greeter_ros",
        "Failed   <<< greeter_ros [0.9s, exited with code 1]",
        "fogros-build: failed: colcon exited with code 1",
    ):
        watcher.line(line)
    assert seen == [
        ("rosdep", "skipped: rosdep is not installed on this host"),
        ("building", "greet_msgs (1/2)"),
        ("building", "greeter_ros (2/2)"),
    ]
    assert watcher.failed == ["greeter_ros"]
    assert watcher.outcome == "failed"


def test_a_failure_keeps_the_compilers_and_pythons_words_not_colcons() -> None:
    gcc = [
        "--- stderr: fast_filter",
        "/ws/sources/src/fast_filter/src/filter.cpp: In function 'int main()':",
        "src/filter.cpp:3:5: error: 'undefined_thing' was not declared in this scope",
        "    3 |     undefined_thing();",
        "      |     ^~~~~~~~~~~~~~~",
        "gmake[2]: *** [CMakeFiles/filter.dir/build.make:76: CMakeFiles/filter.dir/src/filter.cpp.o] Error 1",
    ]
    assert error_lines(gcc)[0].endswith("error: 'undefined_thing' was not declared in this scope")
    setup_py = [
        "Traceback (most recent call last):",
        'File "<string>", line 1, in <module>',
        "RuntimeError: this setup.py refuses to build",
        "Traceback (most recent call last):",
        'File "/venv/lib/python3.11/site-packages/colcon_core/executor/__init__.py", line 91, in __call__',
        "subprocess.CalledProcessError: Command '['python', '-c', '...']' returned non-zero exit status 1.",
    ]
    assert error_lines(setup_py) == ["RuntimeError: this setup.py refuses to build"]
    # Nothing that looks like an error: the last lines, without colcon's tracebacks.
    assert error_lines(["building", "warning: something odd", "done badly"]) == [
        "building",
        "warning: something odd",
        "done badly",
    ]
