//! The audit report as one self-contained HTML page: inline CSS and SVG, no script, no URL of
//! anything else, and a print style for A4. Every text taken from a file is escaped.

use std::fmt::Write as _;

use super::{Facts, Groups, ReportFacts, Run, TOP, svg};

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;font-size:11pt;color:#111;max-width:60em;margin:1.5em auto;padding:0 1em}
h1{font-size:18pt;margin-bottom:.2em}h2{font-size:13pt;border-bottom:1px solid #888;margin-top:1.4em;padding-bottom:.1em}
table{border-collapse:collapse;width:100%;margin:.4em 0}th,td{border:1px solid #bbb;padding:2px 5px;text-align:left;vertical-align:top;font-size:9.5pt}
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:9pt;word-break:break-all}
.ok{color:#0a5d00;font-weight:bold}.bad{color:#a00000;font-weight:bold}.muted{color:#555}
svg{max-width:100%;height:auto;display:block;margin:.3em 0}
svg .l{font-size:11px;fill:#111}svg .ax{stroke:#444;stroke-width:1}
svg .b0{fill:#2f6db5}svg .b1{fill:#3f9d4a}svg .b2{fill:#d08a1e}svg .b3{fill:#8a56b8}svg .b4{fill:#b8434f}svg .b5{fill:#5a7d8c}
section{break-inside:avoid-page}
@page{size:A4;margin:15mm}
@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}h2{break-after:avoid}tr{break-inside:avoid}th{background:#eee;-webkit-print-color-adjust:exact;print-color-adjust:exact}svg rect{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
";

/// Render the facts as the HTML page.
pub fn render(f: &Facts) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}: job {}</title><style>{STYLE}</style></head><body>\n",
        title(f),
        esc(&f.job)
    );
    let _ = writeln!(
        h,
        "<h1>{}: job <span class=\"mono\">{}</span></h1>\
         <p class=\"muted\">Made by unlinker {} at {} from the job's {}. \
         No secret is held in any of them, and none is shown here.</p>",
        title(f),
        esc(&f.job),
        esc(env!("CARGO_PKG_VERSION")),
        esc(&f.generated_at),
        if f.dry_run {
            "dry-run report and its runs log"
        } else {
            "report, checkpoint and runs log"
        }
    );
    if f.dry_run {
        plan_section(&mut h, f);
    }
    job_section(&mut h, f);
    chain_section(&mut h, f);
    runs_section(&mut h, &f.runs);
    match &f.report {
        Ok(r) => report_sections(&mut h, r),
        Err(e) => {
            let _ = write!(
                h,
                "<section><h2>Rows</h2><p class=\"bad\">The report cannot be read: {}</p></section>",
                esc(e)
            );
        }
    }
    rate_limit_section(&mut h, f);
    h.push_str("</body></html>\n");
    h
}

fn title(f: &Facts) -> &'static str {
    if f.dry_run {
        "Dry-run plan"
    } else {
        "Audit report"
    }
}

/// A dry run as a plan: per vendor, the rows a real run would send, those already absent (read
/// with `--check`), and those it would not send.
fn plan_section(h: &mut String, f: &Facts) {
    h.push_str("<section><h2>Plan</h2>");
    let Ok(r) = &f.report else {
        h.push_str("</section>\n");
        return;
    };
    let _ = write!(
        h,
        "<p>{}</p><table id=\"plan\"><tr><th>vendor</th><th>would be sent</th><th>already absent</th>\
         <th>invalid</th><th>duplicate</th><th>check failed</th></tr>",
        if f.checked {
            "The latest dry run read each link's state with the vendor's read-only API \
             (<code>--check</code>): \"would be sent\" are links found, \"already absent\" links \
             that do not exist."
        } else {
            "The latest dry run made no network call (no <code>--check</code>): every valid row \
             would be sent; whether its link still exists was not read."
        }
    );
    let get = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    for (vendor, m) in &r.vendors {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\" data-plan=\"{}/send\">{}</td><td class=\"n\" data-plan=\"{}/absent\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(vendor),
            esc(vendor),
            get(m, "dry_run"),
            esc(vendor),
            get(m, "absent"),
            get(m, "invalid"),
            get(m, "duplicate"),
            get(m, "failed"),
        );
    }
    h.push_str("</table>");
    match &f.estimate_seconds {
        Some(estimate) => {
            h.push_str(
                "<p>Estimated duration of the real run at the job's rates, for the calls it \
                 would send:</p><table id=\"estimate\"><tr><th>vendor</th><th>about</th></tr>",
            );
            for (vendor, seconds) in estimate {
                let d = std::time::Duration::from_secs(seconds.max(0.0).ceil() as u64);
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                    esc(vendor),
                    esc(&humantime::format_duration(d).to_string())
                );
            }
            h.push_str("</table>");
        }
        None => h.push_str(
            "<p class=\"muted\">No duration estimate: only a dry run with <code>--check</code> \
             makes one.</p>",
        ),
    }
    h.push_str("<p class=\"muted\">Invalid rows by rule are listed below.</p></section>\n");
}

fn kv(h: &mut String, k: &str, v: &str) {
    let _ = write!(
        h,
        "<tr><th>{}</th><td class=\"mono\">{}</td></tr>",
        esc(k),
        esc(v)
    );
}

fn job_section(h: &mut String, f: &Facts) {
    h.push_str("<section><h2>Job</h2><table>");
    kv(h, "job", &f.job);
    kv(h, "job file", &f.job_path);
    kv(h, "input", &f.input_path);
    kv(
        h,
        "input SHA-256",
        f.input_sha256
            .as_deref()
            .unwrap_or("not recorded yet (no run has ended)"),
    );
    if let Some(b) = f.input_bytes {
        kv(h, "input bytes", &b.to_string());
    }
    kv(h, "report", &f.report_path);
    kv(h, "checkpoint", &f.checkpoint_path);
    kv(h, "runs log", &f.runs_path);
    h.push_str("</table></section>\n");
}

fn chain_section(h: &mut String, f: &Facts) {
    h.push_str("<section><h2>Runs log hash chain</h2>");
    match &f.chain {
        Ok(lines) => {
            let _ = write!(
                h,
                "<p id=\"chain\" class=\"ok\">intact</p><p>{lines} lines, each holding the SHA-256 of the \
                 line before it. The last line has no successor: keep its hash \
                 (<code>tail -n 1 RUNS_LOG | sha256sum</code>) to notice a later change to it.</p>"
            );
        }
        Err(b) => {
            let run = b.run.map(|r| format!("run {r}, ")).unwrap_or_default();
            let _ = write!(
                h,
                "<p id=\"chain\" class=\"bad\">broken at {}line {}: {}</p>\
                 <p>Everything the runs log says from that line on cannot be trusted.</p>",
                esc(&run),
                b.line,
                esc(&b.reason)
            );
        }
    }
    if f.bad_lines > 0 {
        let _ = write!(
            h,
            "<p class=\"bad\">{} line(s) of the runs log are not run records and are left out below.</p>",
            f.bad_lines
        );
    }
    h.push_str("</section>\n");
}

fn runs_section(h: &mut String, runs: &[Run]) {
    let _ = write!(
        h,
        "<section><h2>Runs ({})</h2><table id=\"runs\"><tr><th>run</th><th>started</th><th>ended</th>\
         <th>user</th><th>host</th><th>version</th><th>stopped</th><th>exit</th><th>rows this run</th></tr>",
        runs.len()
    );
    for run in runs {
        let l = run.any();
        let (ended, stop, exit, this) = match &run.end {
            Some(e) => (
                e.ended_at.clone().unwrap_or_default(),
                e.stop.clone().unwrap_or_default(),
                e.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                e.this_run
                    .as_ref()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, v)| **v > 0)
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ),
            None => (
                "—".into(),
                "no end record: killed, or still running".into(),
                "—".into(),
                String::new(),
            ),
        };
        let _ = write!(
            h,
            "<tr class=\"run\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            l.run,
            esc(&l.started_at),
            esc(&ended),
            esc(&l.user),
            l.uid,
            esc(&l.host),
            esc(&l.version),
            esc(&stop),
            esc(&exit),
            esc(&this),
        );
    }
    h.push_str("</table></section>\n");
}

fn report_sections(h: &mut String, r: &ReportFacts) {
    // Totals per outcome.
    let _ = write!(
        h,
        "<section><h2>Totals per outcome</h2><p>{} in the report.</p><table id=\"totals\">\
         <tr><th>outcome</th><th>rows</th></tr>",
        crate::client::plural(r.rows, "row")
    );
    for (o, n) in &r.outcomes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\" data-outcome=\"{}\">{n}</td></tr>",
            esc(o),
            esc(o)
        );
    }
    h.push_str("</table>");
    let items: Vec<(String, u64)> = r.outcomes.iter().map(|(k, v)| (k.clone(), *v)).collect();
    h.push_str(&svg::bars("rows per outcome", &items));
    if r.unreadable > 0 {
        let _ = write!(
            h,
            "<p class=\"bad\">{} record(s) of the report could not be read (a torn last line?).</p>",
            r.unreadable
        );
    }
    h.push_str("</section>\n");

    // Per vendor.
    h.push_str("<section><h2>Totals per vendor</h2><table id=\"vendors\"><tr><th>vendor</th><th>outcome</th><th>rows</th></tr>");
    for (vendor, outcomes) in &r.vendors {
        for (o, n) in outcomes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                esc(vendor),
                esc(o)
            );
        }
    }
    h.push_str("</table>");
    let items: Vec<(String, u64)> = r
        .vendors
        .iter()
        .map(|(k, m)| (k.clone(), m.values().sum()))
        .collect();
    h.push_str(&svg::bars("rows per vendor", &items));
    h.push_str("</section>\n");

    // Over time.
    h.push_str("<section><h2>Rows completed over time</h2>");
    if r.per_minute.is_empty() {
        h.push_str("<p>No row has a finish time.</p>");
    } else {
        let (buckets, unit) = bucket(&r.per_minute);
        h.push_str(&svg::timeline("rows completed over time", &buckets, &unit));
        h.push_str("<p class=\"muted\">From each row's <code>finished_at</code>, UTC.</p>");
    }
    h.push_str("</section>\n");

    groups_section(h, "Failure reasons", "failures", &r.failures);
    groups_section(h, "Invalid rows by rule", "invalid", &r.invalid);
}

/// Up to 60 buckets of whole minutes from the first to the last minute with a row.
fn bucket(per_minute: &std::collections::BTreeMap<u64, u64>) -> (Vec<(String, u64)>, String) {
    let first = *per_minute.keys().next().unwrap_or(&0);
    let last = *per_minute.keys().next_back().unwrap_or(&0);
    let span = last - first + 1;
    let width = span.div_ceil(60).max(1);
    let n = span.div_ceil(width);
    let mut counts = vec![0u64; n as usize];
    for (m, c) in per_minute {
        counts[((m - first) / width) as usize] += c;
    }
    let label = |minute: u64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(minute * 60);
        let s = humantime::format_rfc3339_seconds(t).to_string();
        s[..16].replace('T', " ")
    };
    let buckets = counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (label(first + i as u64 * width), c))
        .collect();
    let unit = if width == 1 {
        "1 minute".to_string()
    } else {
        format!("{width} minutes")
    };
    (buckets, unit)
}

fn groups_section(h: &mut String, title: &str, id: &str, g: &Groups) {
    let total = g.total();
    let _ = write!(
        h,
        "<section><h2>{}</h2><p>{}.</p>",
        esc(title),
        crate::client::plural(total, "row")
    );
    if total == 0 {
        h.push_str("</section>\n");
        return;
    }
    let top = g.top(TOP);
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>message (digits shown as #)</th><th>rows</th><th>examples (line, vendor, key)</th></tr>"
    );
    for (msg, group) in &top {
        let examples: Vec<String> = group
            .examples
            .iter()
            .map(|(l, v, k)| format!("line {} · {} · {}", esc(l), esc(v), esc(k)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"mono\">{}</td></tr>",
            esc(if msg.is_empty() { "(no message)" } else { msg }),
            group.count,
            examples.join("<br>")
        );
    }
    h.push_str("</table>");
    let shown: u64 = top.iter().map(|(_, g)| g.count).sum();
    if shown < total {
        let _ = write!(
            h,
            "<p class=\"muted\">{} more rows under {} other messages.</p>",
            total - shown,
            g.map.len().saturating_sub(top.len()) + usize::from(g.other > 0)
        );
    }
    h.push_str("</section>\n");
}

fn rate_limit_section(h: &mut String, f: &Facts) {
    h.push_str("<section><h2>Rate-limit answers per vendor</h2>");
    if f.rate_limits.is_empty() {
        h.push_str("<p>No run has recorded vendor calls yet.</p></section>\n");
        return;
    }
    h.push_str(
        "<table id=\"rate\"><tr><th>vendor</th><th>requests</th><th>rate-limit answers</th></tr>",
    );
    for (v, (req, rl)) in &f.rate_limits {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{req}</td><td class=\"n\">{rl}</td></tr>",
            esc(v)
        );
    }
    h.push_str("</table>");
    let items: Vec<(String, u64)> = f
        .rate_limits
        .iter()
        .map(|(k, (_, rl))| (k.clone(), *rl))
        .collect();
    h.push_str(&svg::bars("rate-limit answers per vendor", &items));
    h.push_str("<p class=\"muted\">Over every run, from the runs log's end lines.</p></section>\n");
}
