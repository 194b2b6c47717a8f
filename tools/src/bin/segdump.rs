//! `segdump <partition-dir>`: prints every segment and batch of a Sluice/Kafka partition directory
//! (offset range, position, size, record count, timestamps, CRC status) and a summary.
//! Exit code 0 if everything is valid, 1 if corruption (bad batch, torn tail, offset gap) is
//! found, 2 on usage or I/O errors. Reads files with std only; never modifies them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sluice_storage::{scan_segment, BatchHeader, ScanStop};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 || args[1] == "-h" || args[1] == "--help" {
        eprintln!("usage: segdump <partition-dir>");
        return ExitCode::from(2);
    }
    match run(Path::new(&args[1])) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("segdump: {e}");
            ExitCode::from(2)
        }
    }
}

fn segments(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<i64>() {
                out.push((base, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Returns Ok(true) if no corruption was found.
fn run(dir: &Path) -> std::io::Result<bool> {
    let mut ok = true;
    let (mut batches, mut records, mut bytes) = (0u64, 0u64, 0u64);
    let mut expected_next: Option<i64> = None;
    let segs = segments(dir)?;
    for (base, path) in &segs {
        let data = std::fs::read(path)?;
        println!(
            "segment {} base_offset={} size={}",
            path.display(),
            base,
            data.len()
        );
        let scan = scan_segment(&data);
        for b in &scan.batches {
            let at = b.position as usize;
            let base_ts = BatchHeader::parse(&data[at..]).map_or(-1, |h| h.base_timestamp);
            println!(
                "  offsets {}..={} pos {} size {} records {} base_ts {} max_ts {} epoch {} crc ok",
                b.base_offset,
                b.last_offset,
                b.position,
                b.size,
                b.records_count,
                base_ts,
                b.max_timestamp,
                b.partition_leader_epoch
            );
            if let Some(n) = expected_next {
                if b.base_offset != n {
                    println!("  ! offset gap: expected {n}, found {}", b.base_offset);
                    ok = false;
                }
            } else if b.base_offset != *base {
                println!(
                    "  ! first batch offset {} != segment base {base}",
                    b.base_offset
                );
                ok = false;
            }
            expected_next = Some(b.last_offset + 1);
            batches += 1;
            records += b.records_count.max(0) as u64;
            bytes += b.size as u64;
        }
        let rest = data.len() as u64 - scan.valid_len;
        match &scan.stop {
            ScanStop::End => {}
            ScanStop::Zeros => println!(
                "  note: {rest} zero bytes after {} (preallocation/padding; unclean shutdown)",
                scan.valid_len
            ),
            ScanStop::Incomplete { needed } => {
                println!(
                    "  ! torn batch at {}: needs {needed} bytes, {rest} present",
                    scan.valid_len
                );
                ok = false;
            }
            ScanStop::Invalid(e) => {
                println!(
                    "  ! invalid batch at {} (crc BAD or malformed): {e}",
                    scan.valid_len
                );
                ok = false;
            }
            ScanStop::NonMonotonic {
                base_offset,
                previous_last,
            } => {
                println!(
                    "  ! offset {base_offset} at {} does not follow {previous_last}",
                    scan.valid_len
                );
                ok = false;
            }
        }
    }
    println!(
        "summary: {} segments, {batches} batches, {records} records, {bytes} bytes, next offset {}, {}",
        segs.len(),
        expected_next.map_or("-".to_string(), |n| n.to_string()),
        if ok { "OK" } else { "CORRUPTION FOUND" }
    );
    Ok(ok)
}
