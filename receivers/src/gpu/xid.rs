//! What an Xid code means and what to do about it, for the codes operators act on (NVIDIA's
//! Xid catalog, condensed), and the log severity each one gets.

/// OTLP severity of a GPU event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Informational: recorded, no action needed unless it repeats.
    Info,
    /// Usually the application's fault, or a warning about the GPU.
    Warn,
    /// The GPU needs attention (drain, reset).
    Error,
    /// The GPU is gone until the node is serviced.
    Fatal,
}

impl Severity {
    /// OTLP `SeverityNumber`: INFO 9, WARN 13, ERROR 17, FATAL 21.
    pub fn number(self) -> i32 {
        match self {
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
            Severity::Fatal => 21,
        }
    }

    /// OTLP `SeverityText`.
    pub fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// One Xid code's triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xid {
    /// The code.
    pub code: u64,
    /// What it means, in a few words.
    pub meaning: &'static str,
    /// What an operator should do.
    pub action: &'static str,
    /// How loud the log is.
    pub severity: Severity,
}

const APP: &str = "Usually an application fault (bad address, illegal instruction): check the job's own error output and run it under compute-sanitizer; suspect the GPU only if it repeats across different jobs.";
const DRAIN_RESET: &str = "Drain the node, then reset the GPU (nvidia-smi -r) or reboot; run diagnostics (dcgmi diag -r 3) and RMA the GPU if it repeats.";

/// Codes with a specific triage; anything else gets [`lookup`]'s generic entry.
pub const KNOWN: &[Xid] = &[
    Xid {
        code: 13,
        meaning: "Graphics engine exception",
        action: APP,
        severity: Severity::Warn,
    },
    Xid {
        code: 31,
        meaning: "GPU memory page fault",
        action: APP,
        severity: Severity::Warn,
    },
    Xid {
        code: 43,
        meaning: "GPU stopped processing (the faulting application's channel was reset)",
        action: "The application hit a fault and was stopped; the GPU itself is healthy. Check the application.",
        severity: Severity::Warn,
    },
    Xid {
        code: 45,
        meaning: "Preemptive cleanup after earlier errors or a killed process",
        action: "Look at the Xid that preceded it; no action on its own (it also follows an application being killed).",
        severity: Severity::Info,
    },
    Xid {
        code: 48,
        meaning: "Double-bit (uncorrectable) ECC error",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
    Xid {
        code: 61,
        meaning: "Internal micro-controller breakpoint/warning",
        action: "Reset the GPU at the next maintenance window; report to NVIDIA if it repeats.",
        severity: Severity::Warn,
    },
    Xid {
        code: 62,
        meaning: "Internal micro-controller halt",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
    Xid {
        code: 63,
        meaning: "ECC page retirement or row remapping recorded",
        action: "A memory row was remapped or a page retired; reset the GPU when convenient to apply it. No action if occasional.",
        severity: Severity::Info,
    },
    Xid {
        code: 64,
        meaning: "ECC page retirement or row remapping failed",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
    Xid {
        code: 68,
        meaning: "Video decoder (NVDEC) exception",
        action: "Usually the application's video workload; suspect the GPU if it repeats across jobs.",
        severity: Severity::Warn,
    },
    Xid {
        code: 74,
        meaning: "NVLink error",
        action: "Drain the node and reset the GPUs; check the NVLink/NVSwitch fabric (nvidia-smi nvlink -e) and RMA if it repeats.",
        severity: Severity::Error,
    },
    Xid {
        code: 79,
        meaning: "GPU has fallen off the bus",
        action: "The GPU is unreachable: drain the node and reboot it; check power, cooling and the PCIe slot; RMA if it repeats.",
        severity: Severity::Fatal,
    },
    Xid {
        code: 92,
        meaning: "High single-bit ECC error rate",
        action: "Corrected errors are frequent: schedule diagnostics; no immediate action.",
        severity: Severity::Warn,
    },
    Xid {
        code: 94,
        meaning: "Contained ECC error",
        action: "An uncorrectable error was contained to one application: restart that application; reset the GPU when convenient.",
        severity: Severity::Warn,
    },
    Xid {
        code: 95,
        meaning: "Uncontained ECC error",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
    Xid {
        code: 119,
        meaning: "GSP RPC timeout (the GPU System Processor stopped answering)",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
    Xid {
        code: 120,
        meaning: "GSP error",
        action: DRAIN_RESET,
        severity: Severity::Error,
    },
];

/// The triage of `code`: its own entry, or a generic warning pointing at NVIDIA's catalog.
pub fn lookup(code: u64) -> Xid {
    KNOWN
        .iter()
        .copied()
        .find(|x| x.code == code)
        .unwrap_or(Xid {
            code,
            meaning: "Xid error (not in hpcotel's table)",
            action: "Look the code up in NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors).",
            severity: Severity::Warn,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_operators_care_about_has_its_own_triage() {
        for code in [
            13, 31, 43, 45, 48, 61, 62, 63, 64, 68, 74, 79, 92, 94, 95, 119, 120,
        ] {
            let x = lookup(code);
            assert!(!x.meaning.contains("not in hpcotel's table"), "Xid {code}");
        }
        assert_eq!(lookup(79).severity, Severity::Fatal);
        assert_eq!(lookup(48).severity.number(), 17);
        assert_eq!(lookup(63).severity, Severity::Info);
        assert_eq!(lookup(4242).severity, Severity::Warn);
    }
}
