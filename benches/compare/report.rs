//! The results table: median and range of each figure per case, with ratios against the Kafka
//! Streams case that runs the same topology under the same guarantee.

/// One measured run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    /// Input records per second, from the first output until every input record was committed.
    pub records_per_sec: f64,
    /// User + system CPU seconds of the process per million input records.
    pub cpu_per_million: f64,
    /// Peak RSS in MiB.
    pub peak_rss_mib: f64,
    /// Seconds from process start to the first output record (or to running, for restores).
    pub first_output_s: f64,
}

/// All runs of one case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The Kafka Streams case to compare with, if any.
    pub baseline: Option<String>,
    pub runs: Vec<Run>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn stat(runs: &[Run], f: impl Fn(&Run) -> f64) -> (f64, f64, f64) {
    let v: Vec<f64> = runs.iter().map(f).collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v), min, max)
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(runs: &[Run], f: impl Fn(&Run) -> f64 + Copy) -> String {
    let (m, lo, hi) = stat(runs, f);
    format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi))
}

/// `ours / theirs` of the medians, written as the factor by which ours is better when
/// `higher_is_better`, else as the fraction of theirs that ours uses.
fn ratio(
    ours: &[Run],
    theirs: &[Run],
    f: impl Fn(&Run) -> f64 + Copy,
    higher_is_better: bool,
) -> String {
    let (a, _, _) = stat(ours, f);
    let (b, _, _) = stat(theirs, f);
    if !(a.is_finite() && b.is_finite()) || a == 0.0 || b == 0.0 {
        return "–".into();
    }
    if higher_is_better {
        format!("{:.2}x", a / b)
    } else {
        format!("{:.2}", a / b)
    }
}

/// The markdown table of all cases.
pub fn table(cases: &[Case]) -> String {
    let mut out = String::new();
    out.push_str("| case | records/s | CPU s per M records | peak RSS MiB | start to first output s | vs Kafka Streams: throughput / CPU / RSS / first output |\n");
    out.push_str("|---|---:|---:|---:|---:|---|\n");
    for case in cases {
        let vs = match case
            .baseline
            .as_ref()
            .and_then(|b| cases.iter().find(|c| &c.name == b))
        {
            Some(base) => format!(
                "{} / {} / {} / {}",
                ratio(&case.runs, &base.runs, |r| r.records_per_sec, true),
                ratio(&case.runs, &base.runs, |r| r.cpu_per_million, false),
                ratio(&case.runs, &base.runs, |r| r.peak_rss_mib, false),
                ratio(&case.runs, &base.runs, |r| r.first_output_s, false),
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            case.name,
            cell(&case.runs, |r| r.records_per_sec),
            cell(&case.runs, |r| r.cpu_per_million),
            cell(&case.runs, |r| r.peak_rss_mib),
            cell(&case.runs, |r| r.first_output_s),
            vs
        ));
    }
    out
}

/// One restore run.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRun {
    /// Seconds from process start until the instance runs, restoration included.
    pub seconds: f64,
    /// Changelog records restored.
    pub restored: u64,
    /// Peak RSS in MiB.
    pub peak_rss_mib: f64,
}

/// The restore table: seconds to restore and restored records per second.
pub fn restore_table(cases: &[(String, Vec<RestoreRun>)]) -> String {
    let mut out = String::from("| case | seconds to running (restore included) | records restored | records/s | peak RSS MiB |\n|---|---:|---:|---:|---:|\n");
    for (name, runs) in cases {
        let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        let rates: Vec<f64> = runs
            .iter()
            .map(|r| r.restored as f64 / r.seconds.max(1e-9))
            .collect();
        let rss: Vec<f64> = runs.iter().map(|r| r.peak_rss_mib).collect();
        let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.push_str(&format!(
            "| {name} | {} ({}–{}) | {} | {} ({}–{}) | {} ({}–{}) |\n",
            fmt_num(median(secs.clone())),
            fmt_num(lo(&secs)),
            fmt_num(hi(&secs)),
            runs.first().map_or(0, |r| r.restored),
            fmt_num(median(rates.clone())),
            fmt_num(lo(&rates)),
            fmt_num(hi(&rates)),
            fmt_num(median(rss.clone())),
            fmt_num(lo(&rss)),
            fmt_num(hi(&rss)),
        ));
    }
    out
}

/// The scaling table: per row, kstreams' and Kafka Streams' throughput and peak RSS.
pub fn scaling_table(rows: &[(String, Vec<Run>, Vec<Run>)]) -> String {
    let mut out = String::from("| case | kstreams records/s | kstreams peak RSS MiB | Kafka Streams records/s | Kafka Streams peak RSS MiB | throughput ratio | RSS ratio |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, ours, theirs) in rows {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} |\n",
            cell(ours, |r| r.records_per_sec),
            cell(ours, |r| r.peak_rss_mib),
            cell(theirs, |r| r.records_per_sec),
            cell(theirs, |r| r.peak_rss_mib),
            ratio(ours, theirs, |r| r.records_per_sec, true),
            ratio(ours, theirs, |r| r.peak_rss_mib, false),
        ));
    }
    out
}
