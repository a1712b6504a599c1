//! Container logs (issue 14, in progress): the building blocks of a receiver that tails the
//! kubelet's container log files under `/var/log/pods/<namespace>_<pod>_<uid>/<container>/
//! <restart>.log` and emits each line as an OTLP log record with the pod's attributes.
//!
//! What exists so far is [`parse`]: the CRI and Docker json-file line formats (detected per
//! file), partial lines joined into records up to a maximum size (what is cut is counted),
//! and severity read from a JSON level field or a plain line's leading level word. The
//! receiver itself (tailing, checkpoints, rotation, selection, lifecycle records) is not
//! built yet, and no config can enable it.

pub mod parse;
