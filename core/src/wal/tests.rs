use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Error, Fsync, Options, Position, Wal};

fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        fsync: Fsync::Always,
    }
}

fn record(i: usize) -> Vec<u8> {
    format!("record {i:05} ").repeat(1 + i % 7).into_bytes()
}

/// Everything `consumer` can read, committing as it goes.
fn drain(wal: &mut Wal, consumer: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let batch = wal.read(consumer, 16).unwrap();
        let Some(last) = batch.last() else {
            return out;
        };
        wal.commit(consumer, last.next).unwrap();
        out.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_come_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert_eq!(recovery, Default::default());
    for i in 0..300 {
        wal.append(&record(i)).unwrap();
    }
    assert!(
        segments(dir.path()).len() >= 4,
        "rolled over into several segments"
    );
    // Read half, then "crash" (drop without a clean close) and reopen.
    let mut got = Vec::new();
    while got.len() < 150 {
        let batch = wal.read("otlp", 10).unwrap();
        wal.commit("otlp", batch.last().unwrap().next).unwrap();
        got.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    }
    drop(wal);
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert_eq!(recovery.undelivered, 150);
    assert_eq!(recovery.truncated_bytes + recovery.corrupted_bytes, 0);
    got.extend(drain(&mut wal, "otlp"));
    let want: Vec<_> = (0..300).map(record).collect();
    assert_eq!(got, want);
    // Every segment but the active one is gone once delivered.
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn each_consumer_has_its_own_cursor_and_segments_wait_for_the_slowest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["fast", "slow"]).unwrap();
    for i in 0..200 {
        wal.append(&record(i)).unwrap();
    }
    let before = segments(dir.path()).len();
    assert_eq!(drain(&mut wal, "fast").len(), 200);
    assert_eq!(segments(dir.path()).len(), before, "slow still needs them");
    let first = wal.read("slow", 1).unwrap();
    assert_eq!(first[0].payload.to_vec(), record(0));
    assert_eq!(drain(&mut wal, "slow").len(), 200);
    assert_eq!(segments(dir.path()).len(), 1);
    assert!(matches!(
        wal.read("nobody", 1),
        Err(Error::UnknownConsumer(name)) if name == "nobody"
    ));
}

#[test]
fn a_torn_tail_is_cut_at_the_last_good_record_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    for i in 0..20 {
        wal.append(&record(i)).unwrap();
    }
    drop(wal);
    // Cut the last segment in the middle of its last record.
    let last = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert!(recovery.truncated_bytes > 0, "{recovery:?}");
    assert_eq!(recovery.records, 19);
    assert_eq!(recovery.corrupted_bytes, 0);
    // The log goes on appending after the last good record.
    wal.append(b"after the crash").unwrap();
    let got = drain(&mut wal, "otlp");
    let mut want: Vec<_> = (0..19).map(record).collect();
    want.push(b"after the crash".to_vec());
    assert_eq!(got, want);
}

#[test]
fn flipped_bytes_cost_only_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    let mut positions = Vec::new();
    for i in 0..40 {
        positions.push(wal.append(&record(i)).unwrap());
    }
    drop(wal);
    // Damage record 5's payload, and record 9's length field (so its frame's end is lost).
    let flip = |at: Position, delta: u64| {
        let path = dir.path().join(format!("{:020}.wal", at.segment));
        let f = fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(path)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at.offset + delta).unwrap();
        f.write_all_at(&[b[0] ^ 0x5a], at.offset + delta).unwrap();
    };
    flip(positions[5], 14);
    flip(positions[9], 5);
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert_eq!(recovery.records, 38, "{recovery:?}");
    assert!(recovery.corrupted_bytes > 0);
    assert!(!recovery.corrupted_segments.is_empty());
    let got = drain(&mut wal, "otlp");
    let want: Vec<_> = (0..40).filter(|i| *i != 5 && *i != 9).map(record).collect();
    assert_eq!(got, want);
}

#[test]
fn a_segment_of_zeros_is_skipped_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    let mut positions = Vec::new();
    for i in 0..300 {
        positions.push(wal.append(&record(i)).unwrap());
    }
    drop(wal);
    let zeroed = positions[100].segment;
    let path = dir.path().join(format!("{zeroed:020}.wal"));
    let len = fs::metadata(&path).unwrap().len();
    fs::write(&path, vec![0u8; len as usize]).unwrap();
    let lost = positions.iter().filter(|p| p.segment == zeroed).count();
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert_eq!(recovery.corrupted_bytes, len);
    assert_eq!(recovery.corrupted_segments, [zeroed]);
    assert_eq!(recovery.records, (300 - lost) as u64);
    let got = drain(&mut wal, "otlp");
    let want: Vec<_> = (0..300)
        .filter(|&i| positions[i].segment != zeroed)
        .map(record)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_full_budget_refuses_appends_until_delivery_frees_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_bytes: 16 * 1024,
        ..options(dir.path())
    };
    let (mut wal, _) = Wal::open(opts.clone(), &["otlp"]).unwrap();
    let mut accepted = 0;
    let full = loop {
        match wal.append(&record(accepted)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(full, Error::Full { used, max, no_space: false } if used <= max && max == 16 * 1024),
        "{full}"
    );
    assert!(wal.used_bytes() <= 16 * 1024);
    let got = drain(&mut wal, "otlp");
    assert_eq!(got.len(), accepted);
    wal.append(b"room again").unwrap();
    assert_eq!(drain(&mut wal, "otlp"), [b"room again".to_vec()]);
}

#[test]
fn a_damaged_cursor_file_means_delivering_again_not_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["otlp/backend"]).unwrap();
    for i in 0..10 {
        wal.append(&record(i)).unwrap();
    }
    // Two commits: after 4 records, then after 7 (the newer slot).
    let batch = wal.read("otlp/backend", 4).unwrap();
    wal.commit("otlp/backend", batch.last().unwrap().next)
        .unwrap();
    let batch = wal.read("otlp/backend", 3).unwrap();
    wal.commit("otlp/backend", batch.last().unwrap().next)
        .unwrap();
    drop(wal);
    let cursor = dir.path().join("cursors").join("otlp~backend");
    let bytes = fs::read(&cursor).unwrap();
    // A torn write of the newer slot (seq 2 is slot 0): the older cursor stands.
    let mut torn = bytes.clone();
    torn[10] ^= 0xff;
    fs::write(&cursor, &torn).unwrap();
    let (wal, recovery) = Wal::open(options(dir.path()), &["otlp/backend"]).unwrap();
    assert_eq!(
        recovery.undelivered, 6,
        "back to the commit after 4 records"
    );
    drop(wal);
    // Both slots spoiled: everything is delivered again.
    fs::write(&cursor, vec![0xa5; bytes.len()]).unwrap();
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["otlp/backend"]).unwrap();
    assert_eq!(recovery.undelivered, 10);
    assert_eq!(drain(&mut wal, "otlp/backend").len(), 10);
}

#[test]
fn interval_sync_syncs_only_when_due_and_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        fsync: Fsync::Every(std::time::Duration::ZERO),
        ..options(dir.path())
    };
    let (mut wal, _) = Wal::open(opts, &["otlp"]).unwrap();
    assert!(!wal.sync_if_due().unwrap(), "nothing to sync");
    wal.append(b"x").unwrap();
    assert!(wal.sync_if_due().unwrap());
    assert!(!wal.sync_if_due().unwrap());
    let opts = Options {
        fsync: Fsync::Every(std::time::Duration::from_secs(3600)),
        ..options(dir.path())
    };
    let (mut wal, recovery) = Wal::open(opts, &["otlp"]).unwrap();
    assert_eq!(recovery.records, 1);
    wal.append(b"y").unwrap();
    assert!(!wal.sync_if_due().unwrap(), "not due for an hour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_through_the_handle_share_syncs_and_all_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = super::WalHandle::open(options(dir.path()), &["otlp"]).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let wal = wal.clone();
            tokio::spawn(async move { (i, wal.append(record(i)).await.unwrap()) })
        })
        .collect();
    let mut positions = Vec::new();
    for t in tasks {
        positions.push(t.await.unwrap());
    }
    let mut distinct: Vec<_> = positions.iter().map(|(_, p)| *p).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 200, "every append has its own place");
    // Read everything back through the handle, in the order the appends were written.
    positions.sort_by_key(|(_, p)| *p);
    let mut got = Vec::new();
    loop {
        let batch = wal.read("otlp", None, 32).await.unwrap();
        let Some(last) = batch.last() else { break };
        wal.commit("otlp", last.next).await.unwrap();
        got.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    }
    let want: Vec<_> = positions.iter().map(|(i, _)| record(*i)).collect();
    assert_eq!(got, want);
    // fsync: always, yet appends waiting together shared one sync (group commit); commits
    // are synced with the cursor directory, not counted here.
    let syncs = wal.syncs().await.unwrap();
    eprintln!("200 concurrent appends with fsync always: {syncs} syncs");
    assert!(syncs < 200, "{syncs} syncs for 200 appends");
    drop(wal);
    let (_, recovery) = Wal::open(options(dir.path()), &["otlp"]).unwrap();
    assert_eq!(recovery.undelivered, 0, "commits survived the reopen");
}

#[test]
fn a_log_read_to_its_end_frees_its_space() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(options(dir.path()), &["a", "b"]).unwrap();
    while wal.used_bytes() < 3000 {
        wal.append(&record(1)).unwrap();
    }
    drain(&mut wal, "a");
    assert!(wal.used_bytes() >= 3000, "b has not read it yet");
    drain(&mut wal, "b");
    assert_eq!(wal.used_bytes(), 0);
    wal.append(b"next").unwrap();
    assert_eq!(drain(&mut wal, "a"), [b"next".to_vec()]);
    drop(wal);
    // The cursors moved to the new segment survive a restart.
    let (mut wal, recovery) = Wal::open(options(dir.path()), &["a", "b"]).unwrap();
    assert_eq!(recovery.undelivered, 1, "b has not read 'next'");
    assert_eq!(drain(&mut wal, "b"), [b"next".to_vec()]);
    assert!(drain(&mut wal, "a").is_empty());
}

#[test]
fn records_larger_than_a_read_chunk_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_bytes: 4 << 20,
        max_bytes: 64 << 20,
        ..options(dir.path())
    };
    let (mut wal, _) = Wal::open(opts, &["otlp"]).unwrap();
    let big: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 600 << 10]).collect();
    wal.append(b"small").unwrap();
    for b in &big {
        wal.append(b).unwrap();
    }
    let mut want = vec![b"small".to_vec()];
    want.extend(big);
    // One record at a time, so each read starts mid-segment.
    let mut got = Vec::new();
    loop {
        let batch = wal.read("otlp", 1).unwrap();
        let Some(last) = batch.last() else { break };
        wal.commit("otlp", last.next).unwrap();
        got.extend(batch.into_iter().map(|r| r.payload.to_vec()));
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_reader_that_keeps_up_reads_from_memory_across_segments_and_catches_up_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        fsync: Fsync::Every(std::time::Duration::from_secs(3600)),
        max_bytes: 64 << 20,
        ..options(dir.path())
    };
    let (wal, _) = super::WalHandle::open(opts.clone(), &["otlp"]).unwrap();
    let mut got = Vec::new();
    let mut next = None;
    // Appends and reads interleaved: each read finds the records just appended (in
    // memory), across segment rolls (4 KiB segments).
    for i in 0..300 {
        wal.append(record(i)).await.unwrap();
        if i % 3 == 2 {
            for r in wal.read("otlp", next, 16).await.unwrap() {
                next = Some(r.next);
                got.push(r.payload.to_vec());
            }
        }
    }
    // 4 MiB more than the memory tail keeps, then read everything: the start of it from
    // memory, the rest from the file.
    let big = vec![7u8; 512 << 10];
    for _ in 0..24 {
        wal.append(big.clone()).await.unwrap();
    }
    loop {
        let batch = wal.read("otlp", next, 16).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            next = Some(r.next);
            got.push(r.payload.to_vec());
        }
    }
    let mut want: Vec<_> = (0..300).map(record).collect();
    want.extend(std::iter::repeat_n(big, 24));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "records differ or are out of order");
    // And the positions are the file's: a reader starting over from the cursor sees the same.
    drop(wal);
    let (mut wal, recovery) = Wal::open(opts, &["otlp"]).unwrap();
    assert_eq!(recovery.undelivered as usize, want.len());
    assert!(drain(&mut wal, "otlp") == want);
}
