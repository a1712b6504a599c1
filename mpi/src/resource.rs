//! Who this rank is: the resource attributes of everything it exports, from MPI, the
//! launcher's environment and the pod's.

use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::settings::Settings;

/// The job id: `HPCOTEL_MPI_JOB_ID`, Slurm's job (and step), the Kubeflow MPIJob the pod
/// belongs to, the launcher's job (PMIx namespace, Open MPI's jobid), else `None` (the
/// caller uses the trace id).
pub fn job_id(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    if let Some(id) = get("HPCOTEL_MPI_JOB_ID") {
        return Some(id);
    }
    if let Some(job) = get("SLURM_JOB_ID") {
        return Some(match get("SLURM_STEP_ID") {
            Some(step) => format!("{job}.{step}"),
            None => job,
        });
    }
    // mpi-operator names worker pods `<job>-worker-<i>` and sets the pod's host name to it.
    if get("K_MPI_JOB_ROLE").is_some()
        && let Some(host) = get("HOSTNAME")
        && let Some((job, index)) = host.rsplit_once("-worker-")
        && !job.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(job.to_owned());
    }
    get("PMIX_NAMESPACE")
        .or_else(|| get("OMPI_MCA_ess_base_jobid"))
        .or_else(|| get("PMI_KVSNAME"))
}

/// The rank among the job's processes on this host, when the launcher says.
pub fn local_rank(get: &impl Fn(&str) -> Option<String>) -> Option<i64> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|k| get(k)?.trim().parse().ok())
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The executable's file name.
pub fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mpi-program".into())
}

/// The resource of rank `rank` of `size` in job `job_id`.
pub fn attributes(
    settings: &Settings,
    get: &impl Fn(&str) -> Option<String>,
    rank: i32,
    size: i32,
    job_id: &str,
    implementation: &str,
) -> Vec<KeyValue> {
    let exe = executable_name();
    let mut out = vec![
        kv(
            semconv::SERVICE_NAME,
            settings.service_name.clone().unwrap_or_else(|| exe.clone()),
        ),
        kv(semconv::SERVICE_INSTANCE_ID, format!("{job_id}/{rank}")),
        kv(semconv::HOST_NAME, hostname()),
        kv_int(semconv::PROCESS_PID, i64::from(std::process::id())),
        kv(semconv::PROCESS_EXECUTABLE_NAME, exe),
        kv_int(semconv::MPI_RANK, i64::from(rank)),
        kv_int(semconv::MPI_WORLD_SIZE, i64::from(size)),
        kv(semconv::MPI_JOB_ID, job_id),
        kv(semconv::MPI_IMPLEMENTATION, implementation),
    ];
    if let Some(l) = local_rank(get) {
        out.push(kv_int(semconv::MPI_LOCAL_RANK, l));
    }
    let mut put = |key: &str, value: String| {
        if !out.iter().any(|kv| kv.key == key) {
            out.push(kv(key, value));
        }
    };
    for (k, v) in &settings.resource_attributes {
        put(k, v.clone());
    }
    // The pod, from the downward API (what the enrich processor joins on).
    for (var, key) in [
        ("K8S_POD_UID", semconv::K8S_POD_UID),
        ("K8S_POD_NAME", semconv::K8S_POD_NAME),
        ("K8S_NAMESPACE_NAME", semconv::K8S_NAMESPACE_NAME),
        ("K8S_NODE_NAME", semconv::K8S_NODE_NAME),
    ] {
        if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
            put(key, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcotel_core::telemetry::{attr_int, attr_str};
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn job_ids_in_order_of_trust() {
        assert_eq!(job_id(&env(&[])), None);
        assert_eq!(
            job_id(&env(&[("PMIX_NAMESPACE", "prterun-a-1@1")])).as_deref(),
            Some("prterun-a-1@1")
        );
        assert_eq!(
            job_id(&env(&[
                ("SLURM_JOB_ID", "4711"),
                ("SLURM_STEP_ID", "0"),
                ("PMIX_NAMESPACE", "x")
            ]))
            .as_deref(),
            Some("4711.0")
        );
        assert_eq!(
            job_id(&env(&[
                ("K_MPI_JOB_ROLE", "worker"),
                ("HOSTNAME", "pi-train-worker-3")
            ]))
            .as_deref(),
            Some("pi-train")
        );
        assert_eq!(
            job_id(&env(&[
                ("HPCOTEL_MPI_JOB_ID", "mine"),
                ("SLURM_JOB_ID", "4711")
            ]))
            .as_deref(),
            Some("mine")
        );
    }

    #[test]
    fn the_resource_names_rank_job_host_and_pod() {
        let get = env(&[
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("K8S_POD_UID", "uid-7"),
            ("K8S_POD_NAME", "pi-train-worker-1"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.pod.name=from-otel,team=hpc",
            ),
        ]);
        let settings = Settings::from_env(&get);
        let r = attributes(&settings, &get, 3, 4, "job-9", "Open MPI v4.1.4");
        assert_eq!(attr_int(&r, semconv::MPI_RANK), Some(3));
        assert_eq!(attr_int(&r, semconv::MPI_WORLD_SIZE), Some(4));
        assert_eq!(attr_int(&r, semconv::MPI_LOCAL_RANK), Some(1));
        assert_eq!(attr_str(&r, semconv::MPI_JOB_ID), Some("job-9"));
        assert_eq!(attr_str(&r, semconv::SERVICE_INSTANCE_ID), Some("job-9/3"));
        assert_eq!(attr_str(&r, semconv::K8S_POD_UID), Some("uid-7"));
        // OTEL_RESOURCE_ATTRIBUTES wins over the plain variables.
        assert_eq!(attr_str(&r, semconv::K8S_POD_NAME), Some("from-otel"));
        assert_eq!(attr_str(&r, "team"), Some("hpc"));
        assert!(attr_str(&r, semconv::SERVICE_NAME).is_some_and(|s| !s.is_empty()));
        assert_eq!(attr_str(&r, semconv::HOST_NAME), Some(hostname().as_str()));
    }
}
