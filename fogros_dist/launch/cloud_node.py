"""``CloudNode``: a launch_ros ``Node`` that runs on a fogros_dist machine instead of here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from launch_ros.actions import Node
from launch_ros.utilities import normalize_parameters, normalize_remap_rules

from fogros_dist.deploy.file import action_from_user, service_from_user, topic_from_user
from fogros_dist.errors import ConfigError
from fogros_dist.launch.collector import launch_deployments
from fogros_dist.launch.resolve import CloudNodeArguments, resolve_cloud_node
from fogros_dist.spec import ActionSpec, MachineSpec, ServiceSpec, TopicSpec

__all__ = ["CloudNode"]

TopicLike = str | TopicSpec | Mapping[str, Any]
ServiceLike = str | ServiceSpec | Mapping[str, Any]
ActionLike = str | ActionSpec | Mapping[str, Any]

# ExecuteProcess arguments that cannot mean anything for a process on another machine.
_REFUSED = {
    "cmd": "give executable= and arguments= instead",
    "cwd": "the node runs in its machine's working directory; ship what it reads with files=",
    "shell": "the node is started directly on its machine, never through a shell",
    "emulate_tty": "the node's output goes to files on its machine, not to a terminal",
    "on_exit": "launch cannot watch a process on another machine: use respawn=, or handle DeploymentDown",
    "cached_output": "the node's output is in its log files on the machine (`fogros-dist logs`)",
    "output_format": "remote lines are printed as '[cloud:<machine>] <line>'",
}


class CloudNode(Node):  # type: ignore[misc]
    """A node to offload: ``Node``'s arguments plus ``machine``, the topics to bridge, the files to ship.

    ``topics_in`` are carried robot -> machine, ``topics_out`` machine -> robot; each is
    ``"/name"``, ``"/name:pkg/msg/Type"``, a mapping, or a TopicSpec (relative names resolve in the
    node's namespace). ``services`` and ``actions`` the node serves are called from the robot,
    ``robot_services`` and ``robot_actions`` served on the robot are called by the node; each is
    ``"/name"``, ``"/name:pkg/srv/Type"`` (``pkg/action/Type``), a mapping with ``timeout`` (an
    action also ``result_timeout``), or a ServiceSpec/ActionSpec. ``bridge_parameters`` (default
    True) bridges the node's parameter services, so ``ros2 param`` on the robot reaches it.
    Every ``Node`` argument reaches the process on the machine: ``name``
    (default: the executable), ``namespace`` (under any ``PushRosNamespace``), ``parameters``
    (dictionaries and YAML files, shipped), ``remappings`` (after any ``SetRemap``), ``arguments``,
    ``ros_arguments``, ``env``/``additional_env`` (added to the machine's environment, which keeps
    its own ROS set-up), ``prefix``, ``respawn``/``respawn_delay``/``respawn_max_retries``,
    ``sigterm_timeout``/``sigkill_timeout`` (stopping is SIGINT, SIGTERM, SIGKILL), ``output``
    (``'screen'``/``'both'``: the node's lines on this screen, ``'log'``: only stderr), ``exec_name``
    (its process label), ``log_cmd`` and ``condition``. ``files`` (paths, or a mapping name ->
    path) ship more files; the node finds them in ``$FOGROS_DIST_NODE_FILES``. What cannot apply
    remotely (``cwd``, ``shell``, ``on_exit``, ...) is refused by name.

    A CloudNode joins the deployment of the FogLaunchDescription that holds it (directly, in a
    GroupAction, or in a file that one includes); elsewhere, one unnamed deployment per launch.
    """

    def __init__(
        self,
        *,
        machine: object,
        package: Any,
        executable: Any,
        topics_in: Iterable[TopicLike] = (),
        topics_out: Iterable[TopicLike] = (),
        services: Iterable[ServiceLike] = (),
        actions: Iterable[ActionLike] = (),
        robot_services: Iterable[ServiceLike] = (),
        robot_actions: Iterable[ActionLike] = (),
        bridge_parameters: Any = True,
        name: Any = None,
        namespace: Any = None,
        exec_name: Any = None,
        parameters: Iterable[Any] | None = None,
        remappings: Iterable[tuple[Any, Any]] | None = None,
        arguments: Iterable[Any] | None = None,
        ros_arguments: Iterable[Any] | None = None,
        env: Mapping[Any, Any] | None = None,
        additional_env: Mapping[Any, Any] | None = None,
        files: Iterable[Any] | Mapping[str, Any] | None = None,
        prefix: Any = None,
        output: Any = None,
        respawn: Any = False,
        respawn_delay: float | None = None,
        respawn_max_retries: int = -1,
        sigterm_timeout: Any = None,
        sigkill_timeout: Any = None,
        log_cmd: bool = False,
        condition: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(machine, MachineSpec):  # launch files are untyped: check at run time
            msg = (
                f"CloudNode machine={machine!r} is not a machine: use fogros_dist.machines.Local(), "
                f"SSHHost(...) or AWS(...)"
            )
            raise ConfigError(msg)
        _refuse(kwargs, executable)
        # Iterables may be generators: take each once.
        params = list(parameters) if parameters is not None else None
        remaps = list(remappings) if remappings is not None else None
        args = list(arguments) if arguments is not None else None
        ros_args = list(ros_arguments) if ros_arguments is not None else None
        super().__init__(
            package=package,
            executable=executable,
            name=name,
            namespace=namespace,
            exec_name=exec_name,
            parameters=params,
            remappings=remaps,
            arguments=args,
            ros_arguments=ros_args,
            condition=condition,
        )
        shipped = files.items() if isinstance(files, Mapping) else ((None, f) for f in files or ())
        # Not given: ExecuteProcess's defaults (launch configurations of the same name, else 5 s).
        timeouts: dict[str, Any] = {
            key: value
            for key, value in (("sigterm_timeout", sigterm_timeout), ("sigkill_timeout", sigkill_timeout))
            if value is not None
        }
        self.fog_arguments = CloudNodeArguments(
            package=package,
            executable=executable,
            machine=machine,
            topics_in=tuple(topic_from_user(t, where="CloudNode topics_in") for t in topics_in),
            topics_out=tuple(topic_from_user(t, where="CloudNode topics_out") for t in topics_out),
            services=tuple(service_from_user(s, where="CloudNode services") for s in services),
            actions=tuple(action_from_user(a, where="CloudNode actions") for a in actions),
            robot_services=tuple(
                service_from_user(s, where="CloudNode robot_services") for s in robot_services
            ),
            robot_actions=tuple(action_from_user(a, where="CloudNode robot_actions") for a in robot_actions),
            bridge_parameters=bridge_parameters,
            name=name,
            namespace=namespace,
            exec_name=exec_name,
            parameters=tuple(normalize_parameters(params)) if params is not None else (),
            remappings=tuple(normalize_remap_rules(remaps)) if remaps is not None else (),
            arguments=tuple(args or ()),
            ros_arguments=tuple(ros_args or ()),
            env=tuple((env or {}).items()),
            additional_env=tuple((additional_env or {}).items()),
            files=tuple(shipped),
            prefix=prefix,
            output=output,
            respawn=respawn,
            respawn_delay=respawn_delay,
            respawn_max_retries=respawn_max_retries,
            log_cmd=log_cmd,
            **timeouts,
        )
        # Set by the FogLaunchDescription that holds this node; None: decided when it executes.
        self.fog_deployment: str | None = None

    @property
    def fog_machine(self) -> MachineSpec:
        """The machine the node runs on."""
        return self.fog_arguments.machine

    def execute(self, context: Any) -> list[Any] | None:
        """Resolve into a NodeSpec and join the deployment (launch calls this only when the
        node's condition holds). The first node of a deployment returns the action that brings
        the deployment up, on the next turn of the event loop, once every node has joined."""
        from fogros_dist.launch.actions import FogDeployment

        deployments = launch_deployments(context)
        collector, is_new = deployments.collector(deployments.name_for(self.fog_deployment))
        if collector.started:
            where = f"{self.fog_arguments.package}/{self.fog_arguments.executable}"
            msg = (
                f"CloudNode {where} was reached after deployment {collector.name!r} started (in a "
                f"TimerAction or an event handler?): put every CloudNode where launch reaches it when "
                f"the launch file is loaded"
            )
            raise ConfigError(msg)
        try:
            spec = resolve_cloud_node(self.fog_arguments, context, staging=collector.staging_dir)
            collector.add(spec, self.fog_arguments.machine)
        except BaseException:
            if is_new:  # no FogDeployment will exist to clean up after it
                collector.cleanup()
            raise
        return [FogDeployment(collector=collector)] if is_new else None


def _refuse(kwargs: Mapping[str, Any], executable: Any) -> None:
    for key in kwargs:
        reason = _REFUSED.get(key)
        if reason is None:
            msg = f"CloudNode {executable!r} got an unknown argument {key}=: check its spelling"
        else:
            msg = f"CloudNode {executable!r}: {key}= is not supported for a node on another machine: {reason}"
        raise ConfigError(msg)
