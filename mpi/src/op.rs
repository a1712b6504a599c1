//! The intercepted operations and the message-size classes of their histograms.

/// Declares [`Op`] (numbered as `enum hpcotel_op` in `hpcotel_mpi.h`), [`ALL`] and
/// [`Op::name`] from one table, so the three cannot drift apart.
macro_rules! ops {
    ($($variant:ident => $name:literal,)+) => {
        /// An intercepted MPI call; the numbers match `enum hpcotel_op` in `hpcotel_mpi.h`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum Op {
            $($variant,)+
        }

        /// Every operation, in number order.
        pub const ALL: &[Op] = &[$(Op::$variant,)+];

        impl Op {
            /// The name without the `MPI_` prefix, as in `mpi.operation` (`Allreduce`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)+
                }
            }
        }
    };
}

ops! {
    Allreduce => "Allreduce",
    Reduce => "Reduce",
    Bcast => "Bcast",
    Barrier => "Barrier",
    Allgather => "Allgather",
    Allgatherv => "Allgatherv",
    Alltoall => "Alltoall",
    Alltoallv => "Alltoallv",
    ReduceScatter => "Reduce_scatter",
    ReduceScatterBlock => "Reduce_scatter_block",
    Gather => "Gather",
    Gatherv => "Gatherv",
    Scatter => "Scatter",
    Scatterv => "Scatterv",
    Send => "Send",
    Ssend => "Ssend",
    Recv => "Recv",
    Sendrecv => "Sendrecv",
    Isend => "Isend",
    Irecv => "Irecv",
    Wait => "Wait",
    Waitall => "Waitall",
    Waitany => "Waitany",
    Waitsome => "Waitsome",
    Test => "Test",
    Testall => "Testall",
    Testany => "Testany",
    FileOpen => "File_open",
    FileClose => "File_close",
    FileRead => "File_read",
    FileWrite => "File_write",
    FileReadAt => "File_read_at",
    FileWriteAt => "File_write_at",
    FileReadAll => "File_read_all",
    FileWriteAll => "File_write_all",
    FileReadAtAll => "File_read_at_all",
    FileWriteAtAll => "File_write_at_all",
}

/// How a call's `peer` argument reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// A rooted collective: `mpi.root`.
    Root,
    /// Point-to-point: `mpi.peer`.
    Peer,
    /// No peer.
    None,
}

impl Op {
    /// The operation for a number from C, if valid.
    pub fn from_raw(n: i32) -> Option<Op> {
        usize::try_from(n).ok().and_then(|i| ALL.get(i).copied())
    }
    /// What the peer argument means for this operation.
    pub fn peer_kind(self) -> PeerKind {
        use Op::*;
        match self {
            Reduce | Bcast | Gather | Gatherv | Scatter | Scatterv => PeerKind::Root,
            Send | Ssend | Recv | Sendrecv | Isend | Irecv => PeerKind::Peer,
            _ => PeerKind::None,
        }
    }
}

/// Upper bounds of the message-size classes, in bytes: powers of 8 up to 16 MiB.
pub const SIZE_BOUNDS: [u64; 9] = [0, 8, 64, 512, 4096, 32768, 262_144, 2_097_152, 16_777_216];
/// `mpi.message.size.bucket` values, one per class, the last for anything above 16 MiB.
pub const SIZE_LABELS: [&str; 10] = [
    "0", "8", "64", "512", "4096", "32768", "262144", "2097152", "16777216", "+Inf",
];
/// The class of calls without a message size (Barrier, Wait, …): no bucket attribute.
pub const NO_SIZE: u8 = u8::MAX;

/// The size class of `bytes` (negative: none).
pub fn size_class(bytes: i64) -> u8 {
    if bytes < 0 {
        return NO_SIZE;
    }
    let b = bytes as u64;
    SIZE_BOUNDS
        .iter()
        .position(|&bound| b <= bound)
        .unwrap_or(SIZE_BOUNDS.len()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_match_the_header() {
        let header = include_str!("hpcotel_mpi.h");
        for &op in ALL {
            let c = format!(
                "HPCOTEL_OP_{} = {},",
                op.name().to_ascii_uppercase(),
                op as u8
            );
            assert!(header.contains(&c), "hpcotel_mpi.h lacks `{c}`");
            assert_eq!(Op::from_raw(op as i32), Some(op));
        }
        assert!(header.contains(&format!("HPCOTEL_OP_COUNT = {}", ALL.len())));
        assert_eq!(Op::from_raw(-1), None);
        assert_eq!(Op::from_raw(ALL.len() as i32), None);
    }

    #[test]
    fn size_classes() {
        assert_eq!(size_class(-1), NO_SIZE);
        assert_eq!(SIZE_LABELS[size_class(0) as usize], "0");
        assert_eq!(SIZE_LABELS[size_class(1) as usize], "8");
        assert_eq!(SIZE_LABELS[size_class(8) as usize], "8");
        assert_eq!(SIZE_LABELS[size_class(9) as usize], "64");
        assert_eq!(SIZE_LABELS[size_class(16 << 20) as usize], "16777216");
        assert_eq!(SIZE_LABELS[size_class((16 << 20) + 1) as usize], "+Inf");
    }
}
