//! Attribute and metric names hpcotel emits, each defined once.
//!
//! OpenTelemetry semantic-convention names are spelled exactly as upstream; names hpcotel
//! invents live under `hpcotel.*` and are listed in the README's attribute reference.

// --- OpenTelemetry semantic conventions: resource ---

/// `service.name` (stable).
pub const SERVICE_NAME: &str = "service.name";
/// `service.namespace`: with `service.name`, makes the Prometheus `job` label
/// (`<namespace>/<name>`).
pub const SERVICE_NAMESPACE: &str = "service.namespace";
/// `service.version` (stable).
pub const SERVICE_VERSION: &str = "service.version";
/// `service.instance.id`.
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `host.name`.
pub const HOST_NAME: &str = "host.name";
/// `host.arch`.
pub const HOST_ARCH: &str = "host.arch";
/// `os.type`.
pub const OS_TYPE: &str = "os.type";

// --- hpcotel's own ---

/// Instrumentation scope name of everything hpcotel itself produces.
pub const SCOPE_NAME: &str = "hpcotel";
/// The `service.name` hpcotel reports for its own telemetry.
pub const SELF_SERVICE_NAME: &str = "hpcotel";
/// `hpcotel.component.id`: the config id of the component a self-metric is about (`otlp/in`).
pub const HPCOTEL_COMPONENT_ID: &str = "hpcotel.component.id";
/// `hpcotel.signal`: traces, metrics or logs.
pub const HPCOTEL_SIGNAL: &str = "hpcotel.signal";
/// `hpcotel.reason`: why items were refused or dropped (`pipeline_full`, `permanent`, ...).
pub const HPCOTEL_REASON: &str = "hpcotel.reason";

// --- hpcotel's own metrics (self-telemetry, `service.telemetry.metrics`) ---

/// `hpcotel.receiver.accepted` (counter, `{item}`): items a receiver handed to its pipelines.
pub const METRIC_HPCOTEL_RECEIVER_ACCEPTED: &str = "hpcotel.receiver.accepted";
/// `hpcotel.receiver.refused` (counter, `{item}`): items a receiver turned away, by reason.
pub const METRIC_HPCOTEL_RECEIVER_REFUSED: &str = "hpcotel.receiver.refused";
/// `hpcotel.receiver.corrected` (counter, `{item}`): items a receiver accepted after
/// correcting what they claimed, by reason (`identity`: their `k8s.pod.*` claim was not the
/// connection's pod).
pub const METRIC_HPCOTEL_RECEIVER_CORRECTED: &str = "hpcotel.receiver.corrected";
/// `hpcotel.receiver.log.lost` (counter, `By`): bytes of a container log file that was gone
/// (deleted, or compressed) before it was read to its end, per `k8s.namespace.name` and
/// `k8s.pod.name` (at least this many: what had been seen past the checkpoint).
pub const METRIC_HPCOTEL_RECEIVER_LOG_LOST: &str = "hpcotel.receiver.log.lost";
/// `hpcotel.processor.dropped` (counter, `{item}`): items a processor discarded, by reason.
pub const METRIC_HPCOTEL_PROCESSOR_DROPPED: &str = "hpcotel.processor.dropped";
/// `hpcotel.exporter.sent` (counter, `{item}`): items an exporter delivered.
pub const METRIC_HPCOTEL_EXPORTER_SENT: &str = "hpcotel.exporter.sent";
/// `hpcotel.exporter.send_failed` (counter, `{item}`): items in failed export attempts
/// (retried or not), by reason.
pub const METRIC_HPCOTEL_EXPORTER_SEND_FAILED: &str = "hpcotel.exporter.send_failed";
/// `hpcotel.exporter.dropped` (counter, `{item}`): items an exporter gave up on, by reason.
pub const METRIC_HPCOTEL_EXPORTER_DROPPED: &str = "hpcotel.exporter.dropped";
/// `hpcotel.exporter.queue.size` (gauge, `{item}`): items waiting in an export queue.
pub const METRIC_HPCOTEL_EXPORTER_QUEUE_SIZE: &str = "hpcotel.exporter.queue.size";
/// `hpcotel.exporter.queue.capacity` (gauge, `{item}`): an export queue's capacity.
pub const METRIC_HPCOTEL_EXPORTER_QUEUE_CAPACITY: &str = "hpcotel.exporter.queue.capacity";
/// `hpcotel.identity.source` (resource attribute): where the `k8s.pod.*` identity of data an
/// OTLP receiver took from a pod came from: `connection` (the peer address is that pod's)
/// or `attributes` (the data's own claim, unverified: the peer is not a pod of this node).
pub const HPCOTEL_IDENTITY_SOURCE: &str = "hpcotel.identity.source";

// --- OpenTelemetry semantic conventions: system metrics (host receiver) ---

/// `os.type` value for this build's operating system (`linux`, `darwin`, `windows`, ...).
pub fn os_type_value() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// `cpu.logical_number`: the logical CPU a data point is about.
pub const CPU_LOGICAL_NUMBER: &str = "cpu.logical_number";
/// `system.memory.state`: used | free | buffers | cached.
pub const SYSTEM_MEMORY_STATE: &str = "system.memory.state";
/// `system.paging.state`: used | free.
pub const SYSTEM_PAGING_STATE: &str = "system.paging.state";
/// `system.device`: device identifier (e.g. `/dev/sda1`).
pub const SYSTEM_DEVICE: &str = "system.device";
/// `system.filesystem.mountpoint`.
pub const SYSTEM_FILESYSTEM_MOUNTPOINT: &str = "system.filesystem.mountpoint";
/// `system.filesystem.type` (e.g. `ext4`).
pub const SYSTEM_FILESYSTEM_TYPE: &str = "system.filesystem.type";
/// `system.filesystem.state`: used | free | reserved.
pub const SYSTEM_FILESYSTEM_STATE: &str = "system.filesystem.state";
/// `system.filesystem.mode`: rw | ro.
pub const SYSTEM_FILESYSTEM_MODE: &str = "system.filesystem.mode";
/// `network.interface.name`.
pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
/// `network.io.direction`: receive | transmit.
pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";

/// `system.cpu.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_CPU_UTILIZATION: &str = "system.cpu.utilization";
/// `system.cpu.logical.count` (updowncounter, `{cpu}`).
pub const METRIC_SYSTEM_CPU_LOGICAL_COUNT: &str = "system.cpu.logical.count";
/// `system.cpu.load_average.1m` (gauge, `{thread}`; Collector hostmetrics naming).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_1M: &str = "system.cpu.load_average.1m";
/// `system.cpu.load_average.5m` (gauge, `{thread}`).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_5M: &str = "system.cpu.load_average.5m";
/// `system.cpu.load_average.15m` (gauge, `{thread}`).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_15M: &str = "system.cpu.load_average.15m";
/// `system.memory.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_MEMORY_USAGE: &str = "system.memory.usage";
/// `system.memory.limit` (updowncounter, `By`).
pub const METRIC_SYSTEM_MEMORY_LIMIT: &str = "system.memory.limit";
/// `system.memory.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_MEMORY_UTILIZATION: &str = "system.memory.utilization";
/// `system.memory.linux.available` (updowncounter, `By`; Linux only).
pub const METRIC_SYSTEM_MEMORY_LINUX_AVAILABLE: &str = "system.memory.linux.available";
/// `system.paging.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_PAGING_USAGE: &str = "system.paging.usage";
/// `system.paging.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_PAGING_UTILIZATION: &str = "system.paging.utilization";
/// `system.network.io` (counter, `By`).
pub const METRIC_SYSTEM_NETWORK_IO: &str = "system.network.io";
/// `system.network.packets` (counter, `{packet}`).
pub const METRIC_SYSTEM_NETWORK_PACKETS: &str = "system.network.packets";
/// `system.network.errors` (counter, `{error}`).
pub const METRIC_SYSTEM_NETWORK_ERRORS: &str = "system.network.errors";
/// `system.filesystem.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_FILESYSTEM_USAGE: &str = "system.filesystem.usage";
/// `system.filesystem.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_FILESYSTEM_UTILIZATION: &str = "system.filesystem.utilization";

// --- OpenTelemetry semantic conventions: Kubernetes (stable) ---

/// `k8s.node.name`.
pub const K8S_NODE_NAME: &str = "k8s.node.name";
/// `k8s.namespace.name`.
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
/// `k8s.pod.name`.
pub const K8S_POD_NAME: &str = "k8s.pod.name";
/// `k8s.pod.uid`.
pub const K8S_POD_UID: &str = "k8s.pod.uid";
/// `k8s.container.name`.
pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";
/// `k8s.container.restart_count`: which run of the container (its log file's `<n>.log`).
pub const K8S_CONTAINER_RESTART_COUNT: &str = "k8s.container.restart_count";
/// `log.iostream` (log record attribute): `stdout` or `stderr`.
pub const LOG_IOSTREAM: &str = "log.iostream";
/// `log.file.path` (log record attribute): the container log file a record was read from.
pub const LOG_FILE_PATH: &str = "log.file.path";
/// `hpcotel.log.truncated_bytes` (log record attribute, int): bytes cut from a container
/// log line longer than the `kubernetes_logs` receiver's `max_record_size`.
pub const HPCOTEL_LOG_TRUNCATED_BYTES: &str = "hpcotel.log.truncated_bytes";
/// `k8s.pod.ip`: the pod's IP address; the `enrich` processor finds pods by it.
pub const K8S_POD_IP: &str = "k8s.pod.ip";
/// `k8s.replicaset.name`: the ReplicaSet in the pod's owner chain.
pub const K8S_REPLICASET_NAME: &str = "k8s.replicaset.name";
/// `k8s.deployment.name`: the Deployment in the pod's owner chain.
pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
/// `k8s.job.name`: the Job in the pod's owner chain.
pub const K8S_JOB_NAME: &str = "k8s.job.name";
/// `k8s.cronjob.name`: the CronJob in the pod's owner chain.
pub const K8S_CRONJOB_NAME: &str = "k8s.cronjob.name";
/// `k8s.statefulset.name`: the StatefulSet in the pod's owner chain.
pub const K8S_STATEFULSET_NAME: &str = "k8s.statefulset.name";
/// `k8s.daemonset.name`: the DaemonSet in the pod's owner chain.
pub const K8S_DAEMONSET_NAME: &str = "k8s.daemonset.name";

// --- OpenTelemetry semantic conventions: VCS and deployment (development) ---

/// `vcs.ref.head.revision`: the revision (Git commit) the pod's workload was deployed from.
pub const VCS_REF_HEAD_REVISION: &str = "vcs.ref.head.revision";
/// `vcs.repository.url.full`: the repository the workload is deployed from (the Argo CD
/// Application's `repoURL`).
pub const VCS_REPOSITORY_URL_FULL: &str = "vcs.repository.url.full";
/// `deployment.environment.name`: the deployment environment (`prod`, `staging`), from the
/// Argo CD Application.
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";

// --- hpcotel's own: deployment correlation ---

/// `hpcotel.revision.source`: where `vcs.ref.head.revision` came from: `pod_annotation` |
/// `history` | `sync_status`.
pub const HPCOTEL_REVISION_SOURCE: &str = "hpcotel.revision.source";
/// `hpcotel.argocd.application`: the name of the Argo CD Application managing the pod.
pub const HPCOTEL_ARGOCD_APPLICATION: &str = "hpcotel.argocd.application";
/// `hpcotel.argocd.application.namespace`: the namespace of that Application (Applications
/// may live in any namespace, and two of one name in two namespaces are two applications).
pub const HPCOTEL_ARGOCD_APPLICATION_NAMESPACE: &str = "hpcotel.argocd.application.namespace";

// --- OpenTelemetry semantic conventions: hardware (`hw.*`, development) ---

/// `hw.id`: the GPU's UUID (`GPU-…`), or the MIG instance's (`MIG-…`).
pub const HW_ID: &str = "hw.id";
/// `hw.name`: an easily recognizable name, `gpu<index>` (`gpu3`, `gpu3/mig1` for a MIG instance).
pub const HW_NAME: &str = "hw.name";
/// `hw.type`: `gpu` on every GPU metric; `temperature` is not used (the sensor is an attribute).
pub const HW_TYPE: &str = "hw.type";
/// `hw.vendor`: `NVIDIA`.
pub const HW_VENDOR: &str = "hw.vendor";
/// `hw.model`: the product name NVML reports (`NVIDIA H100 80GB HBM3`).
pub const HW_MODEL: &str = "hw.model";
/// `hw.parent`: on a MIG instance, the `hw.id` (UUID) of its physical GPU.
pub const HW_PARENT: &str = "hw.parent";
/// `hw.serial_number`: the board serial number, where NVML reports one.
pub const HW_SERIAL_NUMBER: &str = "hw.serial_number";
/// `hw.driver_version`: the NVIDIA driver version (`550.54.15`).
pub const HW_DRIVER_VERSION: &str = "hw.driver_version";
/// `hw.state`: ok | degraded | failed, on `hw.status`.
pub const HW_STATE: &str = "hw.state";
/// `hw.gpu.task`: general | encoder | decoder, on `hw.gpu.utilization`.
pub const HW_GPU_TASK: &str = "hw.gpu.task";
/// `hw.sensor_location`: gpu | memory, on `hw.temperature`.
pub const HW_SENSOR_LOCATION: &str = "hw.sensor_location";
/// `error.type` (stable): corrected | uncorrected on `hw.errors`; the NVLink error kind on
/// `hpcotel.gpu.nvlink.errors`.
pub const ERROR_TYPE: &str = "error.type";
/// `process.pid`.
pub const PROCESS_PID: &str = "process.pid";
/// `process.executable.name`: the process's command name (`/proc/<pid>/comm`).
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";

/// `hw.gpu.utilization` (gauge, `1`): fraction of time the GPU's engines were busy, by
/// `hw.gpu.task`; the last sample of the report window.
pub const METRIC_HW_GPU_UTILIZATION: &str = "hw.gpu.utilization";
/// `hw.gpu.memory.utilization` (gauge, `1`): fraction of time device memory was being read
/// or written; the last sample of the report window.
pub const METRIC_HW_GPU_MEMORY_UTILIZATION: &str = "hw.gpu.memory.utilization";
/// `hw.gpu.memory.usage` (updowncounter, `By`): framebuffer memory in use.
pub const METRIC_HW_GPU_MEMORY_USAGE: &str = "hw.gpu.memory.usage";
/// `hw.gpu.memory.limit` (updowncounter, `By`): framebuffer memory size.
pub const METRIC_HW_GPU_MEMORY_LIMIT: &str = "hw.gpu.memory.limit";
/// `hw.power` (gauge, `W`): power draw; the last sample of the report window.
pub const METRIC_HW_POWER: &str = "hw.power";
/// `hw.energy` (counter, `J`): energy consumed since the driver was loaded.
pub const METRIC_HW_ENERGY: &str = "hw.energy";
/// `hw.temperature` (gauge, `Cel`): by `hw.sensor_location`; the last sample of the window.
pub const METRIC_HW_TEMPERATURE: &str = "hw.temperature";
/// `hw.errors` (counter, `{error}`): ECC errors since the driver was loaded (volatile), by
/// `error.type` corrected | uncorrected.
pub const METRIC_HW_ERRORS: &str = "hw.errors";
/// `hw.status` (updowncounter, `1`): 1 for the GPU's current `hw.state`, 0 for the others.
pub const METRIC_HW_STATUS: &str = "hw.status";

// --- hpcotel's own GPU attributes ---

/// `hpcotel.gpu.index`: NVML index of the physical GPU (for a MIG instance, its parent's).
pub const HPCOTEL_GPU_INDEX: &str = "hpcotel.gpu.index";
/// `hpcotel.gpu.pci_bus_id`: PCI bus id (`00000000:18:00.0`).
pub const HPCOTEL_GPU_PCI_BUS_ID: &str = "hpcotel.gpu.pci_bus_id";
/// `hpcotel.gpu.mig.profile`: a MIG instance's profile (`1g.10gb`).
pub const HPCOTEL_GPU_MIG_PROFILE: &str = "hpcotel.gpu.mig.profile";
/// `hpcotel.gpu.mig.gpu_instance_id`: a MIG instance's GPU instance id.
pub const HPCOTEL_GPU_MIG_GPU_INSTANCE_ID: &str = "hpcotel.gpu.mig.gpu_instance_id";
/// `hpcotel.gpu.mig.compute_instance_id`: a MIG instance's compute instance id.
pub const HPCOTEL_GPU_MIG_COMPUTE_INSTANCE_ID: &str = "hpcotel.gpu.mig.compute_instance_id";
/// `hpcotel.gpu.clock.type`: graphics | sm | memory.
pub const HPCOTEL_GPU_CLOCK_TYPE: &str = "hpcotel.gpu.clock.type";
/// `hpcotel.gpu.throttle.reason`: gpu_idle | applications_clocks_setting | sw_power_cap |
/// hw_slowdown | sync_boost | sw_thermal_slowdown | hw_thermal_slowdown |
/// hw_power_brake_slowdown | display_clock_setting.
pub const HPCOTEL_GPU_THROTTLE_REASON: &str = "hpcotel.gpu.throttle.reason";
/// `hpcotel.gpu.retirement.cause`: single_bit_ecc | double_bit_ecc.
pub const HPCOTEL_GPU_RETIREMENT_CAUSE: &str = "hpcotel.gpu.retirement.cause";
/// `hpcotel.gpu.fan.index`: which fan of the board.
pub const HPCOTEL_GPU_FAN_INDEX: &str = "hpcotel.gpu.fan.index";
/// `hpcotel.gpu.xid`: an Xid error code (int).
pub const HPCOTEL_GPU_XID: &str = "hpcotel.gpu.xid";
/// `hpcotel.gpu.xid.meaning`: what an Xid code means, in a few words.
pub const HPCOTEL_GPU_XID_MEANING: &str = "hpcotel.gpu.xid.meaning";
/// `hpcotel.gpu.xid.action`: what an operator should do about it.
pub const HPCOTEL_GPU_XID_ACTION: &str = "hpcotel.gpu.xid.action";
/// `hpcotel.gpu.event`: the kind of a GPU event log: xid | ecc_single_bit | ecc_double_bit |
/// clock_event | pstate_change | gpu_lost | gpu_recovered.
pub const HPCOTEL_GPU_EVENT: &str = "hpcotel.gpu.event";

// --- hpcotel's own GPU metrics ---

/// `hpcotel.gpu.utilization.min` (gauge, `1`): lowest `hw.gpu.utilization` sample of the
/// report window, by `hw.gpu.task`.
pub const METRIC_GPU_UTILIZATION_MIN: &str = "hpcotel.gpu.utilization.min";
/// `hpcotel.gpu.utilization.max` (gauge, `1`): highest sample of the report window.
pub const METRIC_GPU_UTILIZATION_MAX: &str = "hpcotel.gpu.utilization.max";
/// `hpcotel.gpu.power.min` (gauge, `W`): lowest `hw.power` sample of the report window.
pub const METRIC_GPU_POWER_MIN: &str = "hpcotel.gpu.power.min";
/// `hpcotel.gpu.power.max` (gauge, `W`): highest `hw.power` sample of the report window.
pub const METRIC_GPU_POWER_MAX: &str = "hpcotel.gpu.power.max";
/// `hpcotel.gpu.temperature.max` (gauge, `Cel`): highest temperature sample of the window.
pub const METRIC_GPU_TEMPERATURE_MAX: &str = "hpcotel.gpu.temperature.max";
/// `hpcotel.gpu.clock.frequency.min` (gauge, `Hz`): lowest clock sample of the window (a
/// throttling dip), by `hpcotel.gpu.clock.type`.
pub const METRIC_GPU_CLOCK_FREQUENCY_MIN: &str = "hpcotel.gpu.clock.frequency.min";
/// `hpcotel.gpu.memory.free` (updowncounter, `By`): framebuffer memory free.
pub const METRIC_GPU_MEMORY_FREE: &str = "hpcotel.gpu.memory.free";
/// `hpcotel.gpu.memory.reserved` (updowncounter, `By`): framebuffer memory the driver reserves.
pub const METRIC_GPU_MEMORY_RESERVED: &str = "hpcotel.gpu.memory.reserved";
/// `hpcotel.gpu.bar1.usage` (updowncounter, `By`): BAR1 memory in use.
pub const METRIC_GPU_BAR1_USAGE: &str = "hpcotel.gpu.bar1.usage";
/// `hpcotel.gpu.bar1.limit` (updowncounter, `By`): BAR1 memory size.
pub const METRIC_GPU_BAR1_LIMIT: &str = "hpcotel.gpu.bar1.limit";
/// `hpcotel.gpu.power.limit` (gauge, `W`): the enforced power limit.
pub const METRIC_GPU_POWER_LIMIT: &str = "hpcotel.gpu.power.limit";
/// `hpcotel.gpu.clock.frequency` (gauge, `Hz`): by `hpcotel.gpu.clock.type`; last sample.
pub const METRIC_GPU_CLOCK_FREQUENCY: &str = "hpcotel.gpu.clock.frequency";
/// `hpcotel.gpu.throttle` (gauge, `1`): 1 when the clock-event (throttle) reason was active
/// in any sample of the report window, else 0; one series per `hpcotel.gpu.throttle.reason`.
pub const METRIC_GPU_THROTTLE: &str = "hpcotel.gpu.throttle";
/// `hpcotel.gpu.performance_state` (gauge, `1`): the P-state, 0 (P0, fastest) to 15.
pub const METRIC_GPU_PERFORMANCE_STATE: &str = "hpcotel.gpu.performance_state";
/// `hpcotel.gpu.pcie.throughput` (gauge, `By/s`): PCIe traffic, by `network.io.direction`,
/// measured by NVML over 20 ms at report time.
pub const METRIC_GPU_PCIE_THROUGHPUT: &str = "hpcotel.gpu.pcie.throughput";
/// `hpcotel.gpu.pcie.link.generation` (gauge, `1`): current PCIe link generation.
pub const METRIC_GPU_PCIE_LINK_GENERATION: &str = "hpcotel.gpu.pcie.link.generation";
/// `hpcotel.gpu.pcie.link.width` (gauge, `{lane}`): current PCIe link width.
pub const METRIC_GPU_PCIE_LINK_WIDTH: &str = "hpcotel.gpu.pcie.link.width";
/// `hpcotel.gpu.pcie.replays` (counter, `{replay}`): PCIe replay counter.
pub const METRIC_GPU_PCIE_REPLAYS: &str = "hpcotel.gpu.pcie.replays";
/// `hpcotel.gpu.nvlink.io` (counter, `By`): NVLink data, all links, by `network.io.direction`.
pub const METRIC_GPU_NVLINK_IO: &str = "hpcotel.gpu.nvlink.io";
/// `hpcotel.gpu.nvlink.errors` (counter, `{error}`): NVLink errors, all links, by
/// `error.type` crc_flit | crc_data | replay | recovery.
pub const METRIC_GPU_NVLINK_ERRORS: &str = "hpcotel.gpu.nvlink.errors";
/// `hpcotel.gpu.memory.retired_pages` (updowncounter, `{page}`): by
/// `hpcotel.gpu.retirement.cause`.
pub const METRIC_GPU_RETIRED_PAGES: &str = "hpcotel.gpu.memory.retired_pages";
/// `hpcotel.gpu.memory.remapped_rows` (updowncounter, `{row}`): by `error.type`
/// corrected | uncorrected.
pub const METRIC_GPU_REMAPPED_ROWS: &str = "hpcotel.gpu.memory.remapped_rows";
/// `hpcotel.gpu.memory.row_remap.pending` (gauge, `1`): 1 when a row remap awaits a reset.
pub const METRIC_GPU_ROW_REMAP_PENDING: &str = "hpcotel.gpu.memory.row_remap.pending";
/// `hpcotel.gpu.memory.row_remap.failed` (gauge, `1`): 1 when a row remap has failed.
pub const METRIC_GPU_ROW_REMAP_FAILED: &str = "hpcotel.gpu.memory.row_remap.failed";
/// `hpcotel.gpu.fan.speed` (gauge, `1`): fan speed as a fraction of its maximum, by
/// `hpcotel.gpu.fan.index`.
pub const METRIC_GPU_FAN_SPEED: &str = "hpcotel.gpu.fan.speed";
/// `hpcotel.gpu.process.memory.usage` (updowncounter, `By`): GPU memory a process holds, by
/// `process.pid` (plus `process.executable.name` and, in a pod, `k8s.pod.uid`).
pub const METRIC_GPU_PROCESS_MEMORY_USAGE: &str = "hpcotel.gpu.process.memory.usage";
/// `hpcotel.gpu.process.utilization` (gauge, `1`): a process's share of SM time, by
/// `process.pid`.
pub const METRIC_GPU_PROCESS_UTILIZATION: &str = "hpcotel.gpu.process.utilization";
/// `hpcotel.gpu.xid.errors` (counter, `{error}`): Xid errors seen since start, by
/// `hpcotel.gpu.xid`.
pub const METRIC_GPU_XID_ERRORS: &str = "hpcotel.gpu.xid.errors";
/// `hpcotel.gpu.xid.last` (gauge, `1`): the code of the last Xid error seen (0: none), for
/// dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS`.
pub const METRIC_GPU_XID_LAST: &str = "hpcotel.gpu.xid.last";

// --- Rollout traces (Argo CD sync operations) ---

/// `cicd.pipeline.name` (release candidate): on a rollout's root span, the Application name.
pub const CICD_PIPELINE_NAME: &str = "cicd.pipeline.name";
/// `cicd.pipeline.action.name`: `SYNC` on a rollout's root span.
pub const CICD_PIPELINE_ACTION_NAME: &str = "cicd.pipeline.action.name";
/// `cicd.pipeline.run.id`: the sync operation's identity (`<app uid>/<revision>/<startedAt ns>`).
pub const CICD_PIPELINE_RUN_ID: &str = "cicd.pipeline.run.id";
/// `cicd.pipeline.result`: success | failure | error | timeout.
pub const CICD_PIPELINE_RESULT: &str = "cicd.pipeline.result";
/// `k8s.object.kind` (as the Collector's k8s_events receiver): a synced resource's kind.
pub const K8S_OBJECT_KIND: &str = "k8s.object.kind";
/// `k8s.object.name`: a synced resource's name.
pub const K8S_OBJECT_NAME: &str = "k8s.object.name";
/// `hpcotel.argocd.sync.phase`: the operation phase (root span: Succeeded | Failed | Error)
/// or a resource's sync phase (PreSync | Sync | PostSync).
pub const HPCOTEL_ARGOCD_SYNC_PHASE: &str = "hpcotel.argocd.sync.phase";
/// `hpcotel.argocd.sync.status`: a synced resource's result (Synced | SyncFailed | Pruned |
/// PruneSkipped).
pub const HPCOTEL_ARGOCD_SYNC_STATUS: &str = "hpcotel.argocd.sync.status";
/// `hpcotel.argocd.hook.type`: PreSync | Sync | PostSync | SyncFail | Skip, on hook resources.
pub const HPCOTEL_ARGOCD_HOOK_TYPE: &str = "hpcotel.argocd.hook.type";
/// `hpcotel.argocd.hook.phase`: a synced resource's `hookPhase` (Running | Succeeded |
/// Failed | Error | Terminating): a hook's outcome, which its `status` does not show.
pub const HPCOTEL_ARGOCD_HOOK_PHASE: &str = "hpcotel.argocd.hook.phase";
/// `hpcotel.argocd.message`: Argo CD's message about a synced resource.
pub const HPCOTEL_ARGOCD_MESSAGE: &str = "hpcotel.argocd.message";
/// `hpcotel.argocd.health.status`: the Application's health when the rollout settled.
pub const HPCOTEL_ARGOCD_HEALTH_STATUS: &str = "hpcotel.argocd.health.status";
/// `hpcotel.argocd.resource.count`: how many resources the sync applied.
pub const HPCOTEL_ARGOCD_RESOURCE_COUNT: &str = "hpcotel.argocd.resource.count";

// --- Kubernetes Events as logs (the Collector's k8s_events receiver names) ---

/// `k8s.event.reason`: the Event's reason (`BackOff`, `KEDAScaleTargetActivated`, ...).
pub const K8S_EVENT_REASON: &str = "k8s.event.reason";
/// `k8s.event.action`: the Event's action, when set.
pub const K8S_EVENT_ACTION: &str = "k8s.event.action";
/// `k8s.event.name`: the Event object's name.
pub const K8S_EVENT_NAME: &str = "k8s.event.name";
/// `k8s.event.uid`: the Event object's UID.
pub const K8S_EVENT_UID: &str = "k8s.event.uid";
/// `k8s.event.count`: how many times it occurred (int).
pub const K8S_EVENT_COUNT: &str = "k8s.event.count";
/// `k8s.object.uid`: the involved object's UID.
pub const K8S_OBJECT_UID: &str = "k8s.object.uid";
/// `k8s.object.fieldpath`: the involved object's field path (`spec.containers{main}`).
pub const K8S_OBJECT_FIELDPATH: &str = "k8s.object.fieldpath";
/// `k8s.object.api_version`: the involved object's API version.
pub const K8S_OBJECT_API_VERSION: &str = "k8s.object.api_version";

// --- Pod lifecycle logs (receivers.kubernetes, mode: node) ---

/// `event_name` of a container termination record (the kubelet's `state.terminated` or
/// `lastState.terminated`).
pub const EVENT_K8S_CONTAINER_TERMINATED: &str = "hpcotel.k8s.container.terminated";
/// `event_name` of a container restart record (`restartCount` went up).
pub const EVENT_K8S_CONTAINER_RESTARTED: &str = "hpcotel.k8s.container.restarted";
/// `event_name` of a container waiting record (`state.waiting` with a reason such as
/// `CrashLoopBackOff` or `ImagePullBackOff`).
pub const EVENT_K8S_CONTAINER_WAITING: &str = "hpcotel.k8s.container.waiting";
/// `event_name` of a container readiness change record (`ready` flipped).
pub const EVENT_K8S_CONTAINER_READINESS: &str = "hpcotel.k8s.container.readiness";
/// `k8s.container.status.state` (development): `terminated` | `running` | `waiting`.
pub const K8S_CONTAINER_STATUS_STATE: &str = "k8s.container.status.state";
/// `k8s.container.status.reason` (development): the reason of the container's state
/// (`OOMKilled`, `Error`, `Completed`, `CrashLoopBackOff`, `ImagePullBackOff`, ...).
pub const K8S_CONTAINER_STATUS_REASON: &str = "k8s.container.status.reason";
/// `k8s.container.status.last_terminated_reason` (development): the reason of the
/// container's previous termination (`lastState.terminated.reason`).
pub const K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON: &str =
    "k8s.container.status.last_terminated_reason";
/// `container.id` (development): the runtime's container id, without the `containerd://`
/// (`<type>://`) prefix the API writes.
pub const CONTAINER_ID: &str = "container.id";
/// `hpcotel.k8s.container.exit_code` (int): the terminated container's exit code.
pub const HPCOTEL_K8S_CONTAINER_EXIT_CODE: &str = "hpcotel.k8s.container.exit_code";
/// `hpcotel.k8s.container.signal` (int): the signal that ended the container, when the API
/// says (the kubelet leaves `signal` unset today; an exit code above 128 conventionally
/// means 128 + the signal).
pub const HPCOTEL_K8S_CONTAINER_SIGNAL: &str = "hpcotel.k8s.container.signal";
/// `hpcotel.k8s.container.started_at`: when the terminated container had started
/// (RFC 3339, as the API writes it).
pub const HPCOTEL_K8S_CONTAINER_STARTED_AT: &str = "hpcotel.k8s.container.started_at";
/// `hpcotel.k8s.container.finished_at`: when the container terminated (RFC 3339).
pub const HPCOTEL_K8S_CONTAINER_FINISHED_AT: &str = "hpcotel.k8s.container.finished_at";
/// `hpcotel.k8s.container.message`: the kubelet's message about the state: a termination
/// message (with `terminationMessagePolicy: FallbackToLogsOnError`, the log's last lines)
/// or why the container waits (`back-off 10s restarting failed container=...`).
pub const HPCOTEL_K8S_CONTAINER_MESSAGE: &str = "hpcotel.k8s.container.message";
/// `hpcotel.k8s.container.ready` (bool): the container's readiness after a change.
pub const HPCOTEL_K8S_CONTAINER_READY: &str = "hpcotel.k8s.container.ready";
/// `hpcotel.k8s.container.log_tail`: the last lines the terminated container wrote, when a
/// container-log source is wired to the lifecycle records.
pub const HPCOTEL_K8S_CONTAINER_LOG_TAIL: &str = "hpcotel.k8s.container.log_tail";
/// `hpcotel.k8s.pod.deleting` (bool): `true` on a termination of a pod being deleted (a
/// rollout or scale-down stopping it), not a failure of its own.
pub const HPCOTEL_K8S_POD_DELETING: &str = "hpcotel.k8s.pod.deleting";

// --- KEDA condition changes (receivers.kubernetes, cluster output) ---

/// `hpcotel.keda.condition.type`: Ready | Active | Fallback | Paused.
pub const HPCOTEL_KEDA_CONDITION_TYPE: &str = "hpcotel.keda.condition.type";
/// `hpcotel.keda.condition.status`: True | False | Unknown.
pub const HPCOTEL_KEDA_CONDITION_STATUS: &str = "hpcotel.keda.condition.status";
/// `hpcotel.keda.condition.reason`: KEDA's reason for the condition.
pub const HPCOTEL_KEDA_CONDITION_REASON: &str = "hpcotel.keda.condition.reason";

// --- MPI jobs (libhpcotel_mpi.so, the PMPI interposition library in `mpi/`) ---

/// `process.exit.code`: the launcher's exit code (`hpcotel mpirun`'s root span).
pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
/// `process.command_args`: the launcher's argv (`hpcotel mpirun`'s root span).
pub const PROCESS_COMMAND_ARGS: &str = "process.command_args";
/// `mpi.rank`: the rank in `MPI_COMM_WORLD` (int; resource of every rank's data).
pub const MPI_RANK: &str = "mpi.rank";
/// `mpi.world.size`: the size of `MPI_COMM_WORLD` (int).
pub const MPI_WORLD_SIZE: &str = "mpi.world.size";
/// `mpi.local_rank`: the rank among the job's processes on this host, when the launcher says.
pub const MPI_LOCAL_RANK: &str = "mpi.local_rank";
/// `mpi.job.id`: the job: `HPCOTEL_MPI_JOB_ID`, Slurm's job id, the Kubeflow MPIJob name,
/// the launcher's job id, else the trace id.
pub const MPI_JOB_ID: &str = "mpi.job.id";
/// `mpi.implementation`: the first line of `MPI_Get_library_version`.
pub const MPI_IMPLEMENTATION: &str = "mpi.implementation";
/// `mpi.operation`: the MPI call without its `MPI_` prefix (`Allreduce`, `Send`, `File_write_all`).
pub const MPI_OPERATION: &str = "mpi.operation";
/// `mpi.communicator.size`: the size of the call's communicator (int; absent for
/// independent MPI-IO calls).
pub const MPI_COMMUNICATOR_SIZE: &str = "mpi.communicator.size";
/// `mpi.message.size`: the bytes this rank passed to the call (int, slow-call spans).
pub const MPI_MESSAGE_SIZE: &str = "mpi.message.size";
/// `mpi.message.size.bucket`: the message size class of `mpi.call.duration`: the upper bound
/// in bytes (`0`, `8`, `64`, … `16777216`, `+Inf`); absent for calls without a size.
pub const MPI_MESSAGE_SIZE_BUCKET: &str = "mpi.message.size.bucket";
/// `mpi.peer`: the peer rank of a point-to-point call (int).
pub const MPI_PEER: &str = "mpi.peer";
/// `mpi.root`: the root rank of a rooted collective (int).
pub const MPI_ROOT: &str = "mpi.root";
/// `mpi.phase`: the phase name given to `MPI_Pcontrol(1, name)`.
pub const MPI_PHASE: &str = "mpi.phase";
/// `mpi.abort.code`: the error code passed to `MPI_Abort` (int).
pub const MPI_ABORT_CODE: &str = "mpi.abort.code";
/// Span name of the job span, from rank 0's `MPI_Init` to its `MPI_Finalize`.
pub const SPAN_MPI_JOB: &str = "mpi.job";
/// Span name of each rank's span, a child of the job span.
pub const SPAN_MPI_RANK: &str = "mpi.rank";
/// `mpi.call.duration` (histogram, `s`): time inside intercepted MPI calls, per
/// `mpi.operation`, `mpi.communicator.size` and `mpi.message.size.bucket`; cumulative.
pub const METRIC_MPI_CALL_DURATION: &str = "mpi.call.duration";
/// Event name of the job summary log rank 0 emits each export period and at `MPI_Finalize`.
pub const EVENT_MPI_JOB_SUMMARY: &str = "mpi.job.summary";
/// `mpi.summary.final`: true on the summary emitted at `MPI_Finalize`.
pub const MPI_SUMMARY_FINAL: &str = "mpi.summary.final";
/// `mpi.collectives.analyzed`: collectives on `MPI_COMM_WORLD` the straggler analysis compared.
pub const MPI_COLLECTIVES_ANALYZED: &str = "mpi.collectives.analyzed";
/// `mpi.straggler.rank`: the rank that kept the others waiting longest in total (int).
pub const MPI_STRAGGLER_RANK: &str = "mpi.straggler.rank";
/// `mpi.straggler.host`: that rank's host.
pub const MPI_STRAGGLER_HOST: &str = "mpi.straggler.host";
/// `mpi.straggler.last_count`: in how many of the analyzed collectives it arrived last (int).
pub const MPI_STRAGGLER_LAST_COUNT: &str = "mpi.straggler.last_count";
/// `mpi.straggler.delay`: the time (s) the earliest rank waited for it, summed over those
/// collectives (double).
pub const MPI_STRAGGLER_DELAY: &str = "mpi.straggler.delay";
/// `mpi.stragglers`: the top ranks, most delay first, as `rank R on HOST: last in N, D s` (array).
pub const MPI_STRAGGLERS: &str = "mpi.stragglers";
/// `hpcotel.mpi.spans.dropped`: slow-call and phase spans this rank dropped because its queue
/// was full (int, on the rank span).
pub const HPCOTEL_MPI_SPANS_DROPPED: &str = "hpcotel.mpi.spans.dropped";

// --- hpcotel's own: GPUs held by several pods (kubelet PodResources) ---

/// `hpcotel.gpu.shared`: `true` on the resource of a GPU or MIG instance that several pods
/// hold (time-slicing or MPS replicas, a DRA claim shared by pods). Such a resource carries
/// no `k8s.namespace.name`, `k8s.pod.name`, `k8s.container.name` nor `k8s.pod.uid`: the
/// device belongs to none of them alone.
pub const HPCOTEL_GPU_SHARED: &str = "hpcotel.gpu.shared";
/// `hpcotel.gpu.pods`: on the same resources, every pod holding the device as
/// `<namespace>/<pod>`, sorted (string array; a Prometheus label holds it as JSON).
pub const HPCOTEL_GPU_PODS: &str = "hpcotel.gpu.pods";
