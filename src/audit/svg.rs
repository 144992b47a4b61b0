//! Inline SVG charts: plain shapes and text, every label escaped, no script, nothing fetched.

use super::html::esc;

const WIDTH: f64 = 640.0;

/// Horizontal bars, one per `(label, value)`, with the value written after each bar.
pub fn bars(title: &str, items: &[(String, u64)]) -> String {
    let row = 22.0;
    let label_w = 150.0;
    let value_w = 80.0;
    let height = row * items.len().max(1) as f64 + 10.0;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"{}\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">",
        esc(title)
    );
    for (i, (label, value)) in items.iter().enumerate() {
        let y = 5.0 + row * i as f64;
        let w = (WIDTH - label_w - value_w) * (*value as f64) / max;
        s.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" class=\"l\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" class=\"b{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"l\">{value}</text>",
            label_w - 6.0,
            y + 15.0,
            esc(label),
            row - 6.0,
            i % 6,
            label_w + w + 4.0,
            y + 15.0,
        ));
    }
    s.push_str("</svg>");
    s
}

/// Vertical bars over time: `buckets` of `(start label, rows)`, first and last labelled.
pub fn timeline(title: &str, buckets: &[(String, u64)], unit: &str) -> String {
    let height = 200.0;
    let (left, bottom, top) = (50.0, 30.0, 10.0);
    let plot_w = WIDTH - left - 10.0;
    let plot_h = height - bottom - top;
    let max = buckets.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = buckets.len().max(1) as f64;
    let bw = plot_w / n;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"{}\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">",
        esc(title)
    );
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" class=\"ax\"/>\
         <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"ax\"/>\
         <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\" class=\"l\">{max}</text>\
         <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" class=\"l\">0</text>",
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h,
        left - 4.0,
        top + 10.0,
        left - 4.0,
        top + plot_h,
    ));
    for (i, (_, v)) in buckets.iter().enumerate() {
        let h = plot_h * (*v as f64) / max as f64;
        s.push_str(&format!(
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" class=\"b0\"/>",
            left + bw * i as f64 + bw * 0.1,
            top + plot_h - h,
            (bw * 0.8).max(0.5),
        ));
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        s.push_str(&format!(
            "<text x=\"{left}\" y=\"{:.0}\" class=\"l\">{}</text>\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\" class=\"l\">{} (bars of {})</text>",
            height - 10.0,
            esc(&first.0),
            left + plot_w,
            height - 10.0,
            esc(&last.0),
            esc(unit),
        ));
    }
    s.push_str("</svg>");
    s
}
